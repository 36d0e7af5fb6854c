"""GraphQL operations counted and timed for ``/metrics`` (a schema extension, not code in resolvers)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        metrics = getattr(getattr(ctx.context, "services", None), "metrics", None)
        if metrics is None:
            return
        try:
            operation = ctx.operation_type.value
        except Exception:  # the document did not parse, or names no operation it holds
            operation = "invalid"
        failed = bool(getattr(ctx.result, "errors", None)) or bool(getattr(ctx, "pre_execution_errors", None))
        metrics.graphql_operations.labels(operation, "error" if failed else "ok").inc()
        metrics.graphql_latency.labels(operation).observe(time.perf_counter() - started)
