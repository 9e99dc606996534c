"""The contract in code (docs/contract.md): the CloudEvent envelope, shared field types, the
records TradePulse publishes, the codec, topic names and schema export. Domains declare their own
event models on top of it; nothing here lists them."""
