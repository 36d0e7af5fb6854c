from tests.e2e.instance import instance

__all__ = ["instance"]
