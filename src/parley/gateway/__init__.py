"""The real-time gateway: Socket.IO for IMKIT clients (see parley.gateway.server)."""
