"""The server's use cases, free of HTTP: buying mints with a payment (purchase) and
verifying and settling payments for resource servers (facilitation).

They reach the store and the chain through payfirst.ports and everything else (clock,
rate limit, change notices) through the small protocols of `deps`; the HTTP modules in
payfirst.api only read requests, call them and shape the answers."""
