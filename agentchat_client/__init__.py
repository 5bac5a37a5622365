"""AgentChat's Python client: an asyncio agent over the WebSocket protocol (docs/PROTOCOL.md)."""

from agentchat_client.client import AgentChatClient, AgentChatError, ConnectionLost

__all__ = ["AgentChatClient", "AgentChatError", "ConnectionLost"]
