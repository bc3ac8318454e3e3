"""The broker carries events between the nodes of a cluster. See :mod:`parley.broker.base`."""

from parley.broker.base import Broker, Handler
from parley.broker.memory import MemoryBroker


def create_broker(redis_url: str) -> Broker:
    if redis_url:
        from parley.broker.redis import RedisBroker

        return RedisBroker(redis_url)
    return MemoryBroker()


__all__ = ["Broker", "Handler", "MemoryBroker", "create_broker"]
