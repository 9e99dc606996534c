"""The export cycle across agencies: customs release, payment credited through CIPS, refund issued
(docs/contract.md section 4), from the other services' case topics (section 7)."""
