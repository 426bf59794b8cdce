"""ASGI entry point: `uvicorn services.chatbot.app:app`."""

from mlobs.server import create_app
from services.chatbot.model import Chatbot

app = create_app(Chatbot.load())
