"""The operators' dashboard: server-rendered pages at ``/dashboard`` to manage
applications, their keys and domains, and to watch their usage."""

from parley.dashboard.routes import DashboardFront, create_dashboard

__all__ = ["DashboardFront", "create_dashboard"]
