// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title MintToken
/// @notice An ERC-20 sold by paid mints: each mint gives `MINT_AMOUNT` tokens, at most
/// `MAX_MINT_COUNT` mints ever happen, and each mint id can be minted only once. Buyers pay
/// `PRICE_PER_MINT` of `PAYMENT_TOKEN` per mint to this contract's address.
contract MintToken is ERC20, AccessControl {
    using SafeERC20 for IERC20;

    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    uint256 public immutable MINT_AMOUNT;
    uint256 public immutable MAX_MINT_COUNT;
    uint256 public immutable PRICE_PER_MINT;
    address public immutable PAYMENT_TOKEN;

    uint256 public mintCount;
    mapping(bytes32 mintId => bool minted) private _minted;

    error AlreadyMinted(bytes32 mintId);
    error MaxMintCountReached();
    error LengthMismatch();

    event Minted(bytes32 indexed mintId, address indexed to, uint256 amount);
    event Withdrawn(address indexed token, address indexed to, uint256 amount);

    constructor(
        string memory name_,
        string memory symbol_,
        uint256 mintAmount,
        uint256 maxMintCount,
        uint256 pricePerMint,
        address paymentToken,
        address admin
    ) ERC20(name_, symbol_) {
        MINT_AMOUNT = mintAmount;
        MAX_MINT_COUNT = maxMintCount;
        PRICE_PER_MINT = pricePerMint;
        PAYMENT_TOKEN = paymentToken;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function hasMinted(bytes32 mintId) external view returns (bool) {
        return _minted[mintId];
    }

    function mint(address to, bytes32 mintId) external onlyRole(MINTER_ROLE) {
        _mintOne(to, mintId);
    }

    /// @notice Mints every pair or none: one id already minted, or the cap, reverts the batch.
    function batchMint(address[] calldata to, bytes32[] calldata mintIds) external onlyRole(MINTER_ROLE) {
        require(to.length == mintIds.length, LengthMismatch());
        for (uint256 i = 0; i < to.length; ++i) {
            _mintOne(to[i], mintIds[i]);
        }
    }

    /// @notice Moves payments (or anything else) this contract holds.
    function withdraw(address token, address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        IERC20(token).safeTransfer(to, amount);
        emit Withdrawn(token, to, amount);
    }

    function _mintOne(address to, bytes32 mintId) private {
        require(!_minted[mintId], AlreadyMinted(mintId));
        require(mintCount < MAX_MINT_COUNT, MaxMintCountReached());
        _minted[mintId] = true;
        ++mintCount;
        _mint(to, MINT_AMOUNT);
        emit Minted(mintId, to, MINT_AMOUNT);
    }
}
