"""The WebSocket API's Lambda handlers ($connect, $disconnect, $default) and a
local gateway that calls them the way API Gateway does (docs/websocket.md)."""
