"""WebSocket live boards."""
