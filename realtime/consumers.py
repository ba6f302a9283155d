from channels.generic.websocket import AsyncWebsocketConsumer

# Application close code for a WebSocket path that does not exist (4000-4999 are ours).
CLOSE_UNKNOWN_ROUTE = 4404


class UnknownRouteConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake for paths no other consumer matched, instead of the router
    raising (which servers log as an error and answer with 500)."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_UNKNOWN_ROUTE)
