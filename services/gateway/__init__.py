"""``tradepulse gateway``: CloudEvents over HTTP into TradePulse's input topics, each producer allowed
only its own sources and event types (docs/operations.md "HTTP gateway", schemas/gateway.openapi.yaml)."""
