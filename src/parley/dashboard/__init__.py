"""The operators' dashboard: server-rendered pages at ``/dashboard`` to manage
applications, their keys and domains, and to watch their usage."""

from parley.dashboard.routes import DashboardMount, create_dashboard

__all__ = ["DashboardMount", "create_dashboard"]
