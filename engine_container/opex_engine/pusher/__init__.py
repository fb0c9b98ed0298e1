"""The WebSocket pusher: live prices and account updates to API Gateway
WebSocket connections (docs/websocket.md)."""
