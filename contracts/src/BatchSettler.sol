// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";

/// @title BatchSettler
/// @notice Forwards many EIP-3009 `transferWithAuthorization` calls of one asset in one
/// transaction; each item succeeds or fails on its own. No owner and no permissions: an
/// authorization binds payer, payee and value, so the settler only forwards it. It keeps
/// no storage and emits no events: the asset's `AuthorizationUsed(authorizer, nonce)` log
/// in the receipt is the per-item success signal.
contract BatchSettler {
    struct Authorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    function settle(address asset, Authorization[] calldata auths) external {
        IERC3009 token = IERC3009(asset);
        uint256 n = auths.length;
        for (uint256 i; i < n; ) {
            Authorization calldata a = auths[i];
            try
                token.transferWithAuthorization(
                    a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.v, a.r, a.s
                )
            {} catch {}
            unchecked {
                ++i;
            }
        }
    }
}
