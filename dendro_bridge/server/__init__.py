"""A self-hostable Dendro service: same endpoints, SQLite state, signed object URLs."""
from dendro_bridge.server.admin import Admin, AdminError
from dendro_bridge.server.app import ServerConfig, create_app
from dendro_bridge.server.serve import make_dendro_server

__all__ = ["Admin", "AdminError", "ServerConfig", "create_app", "make_dendro_server"]
