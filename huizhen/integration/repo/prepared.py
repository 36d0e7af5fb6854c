"""Core statements of the ingest hot path, run on the driver connection itself.

Why: for each execution SQLAlchemy looks its compiled form up, builds an
execution context, processes parameters and rows, and crosses into a greenlet
and back for every driver call. Measured here that is ~100 µs a statement,
where SQLite needs ~10 µs to run it; an HL7 message is several statements,
and this overhead was the largest single cost of ingest.

A :class:`Prepared` statement is still written in SQLAlchemy Core and
compiled by SQLAlchemy, once per dialect and set of parameter names, with the
bind and result processors of its column types (``UTCDateTime``, JSON…). Only
the execution goes straight to the driver (sqlite3 under
:mod:`huizhen.integration.sqlite_inline`, asyncpg), on the same connection and
inside the same transaction as the caller's ``AsyncConnection``.

Where the driver cannot be reached safely the statement runs through
SQLAlchemy as usual, with the same result: a driver other than those two, a
statement that needs SQLAlchemy's execution (an expanding IN, a column default
computed in Python), or an asyncpg connection outside a transaction. (Where
SQLAlchemy has begun one, its asyncpg adapter sends BEGIN lazily, with the
first statement it runs; a first statement run here sends it the same way.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Float, Numeric, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from huizhen.integration.sqlite_inline import InlineConnection

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None
_DRIVER_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)
_CONNECTIONS = "huizhen.driver_connections"


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # parameter names in positional order
    binds: tuple[Processor, ...]
    defaults: Mapping[str, Any]  # values bound in the statement itself
    columns: tuple[str, ...]
    results: tuple[Processor, ...]
    direct: bool  # False: only SQLAlchemy's own execution gets it right


class Prepared:
    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            found = self._compiled[(dialect.name, keys)] = _compile(self.statement, dialect, keys)
        return found


def _compile(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup or ())
    direct = bool(
        dialect.positional
        and not compiled.literal_execute_params
        and not compiled.post_compile_params
        and not getattr(compiled, "insert_prefetch", ())
        and not getattr(compiled, "update_prefetch", ())
    )
    binds = compiled.binds
    columns: tuple[str, ...] = ()
    results: tuple[Processor, ...] = ()
    if getattr(statement, "is_select", False) or getattr(statement, "_returning", ()):
        # a SELECT, or an INSERT/UPDATE … RETURNING: its rows come back the same way
        selected = list(statement.exported_columns)
        columns = tuple(statement.exported_columns.keys())
        results = tuple(_result_processor(c.type, dialect) for c in selected)
    return _Compiled(
        sql=compiled.string,
        order=order,
        binds=tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) if name in binds else None
            for name in order
        ),
        defaults={name: b.value for name, b in binds.items() if b.value is not None and not b.callable},
        columns=columns,
        results=results,
        direct=direct,
    )


class ByIds:
    """A statement over a list of ids (a page's patients, practitioners, studies…) whose ids are
    one parameter, not one each: SQLite reads them from a JSON array (``IN (SELECT value FROM
    json_each(:ids))``), PostgreSQL from an array (``= ANY(:ids)``). The statement's text is then
    the same for any number of ids, so it runs on the driver like any :class:`Prepared` one;
    an expanding ``IN`` can only run through SQLAlchemy, whose execution and row objects cost
    more than SQLite's work for 50 rows (measured: 164 against 342 µs for a page's 50 patients).

    ``build`` makes the statement from the condition on a column: ``build(lambda col: …)``.
    """

    def __init__(self, build: Callable[[Callable[[Any], Any]], Executable], name: str = "ids") -> None:
        self.name = name
        self._prepared = {
            dialect: Prepared(build(lambda column, d=dialect: in_list(column, name, d)))  # type: ignore[misc]
            for dialect in ("sqlite", "postgresql")
        }

    def prepared(self, dialect: str) -> Prepared:
        return self._prepared.get(dialect, self._prepared["postgresql"])

    def params(self, dialect: str, ids: Sequence[str], **more: Any) -> dict[str, Any]:
        return {self.name: list_param(dialect, ids), **more}


def in_list(column: Any, name: str, dialect: str) -> Any:
    """``column IN`` the list given as the one parameter ``name`` (see :func:`list_param`):
    SQLite reads it from a JSON array (``json_each``), PostgreSQL from an array (``= ANY``)."""
    if dialect == "sqlite":
        values: Any = select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=String)))
        return column.in_(values)
    return column == any_(bindparam(name, type_=ARRAY(String)))


def list_param(dialect: str, values: Sequence[str]) -> Any:
    """A list as the one parameter of :func:`in_list`."""
    return json.dumps(list(values)) if dialect == "sqlite" else list(values)


# the PostgreSQL type a numeric column's values come back as: asyncpg's result processors are
# chosen by it (float8 needs none; numeric becomes a float where the type asks for floats)
_PG_NUMERIC_OIDS = {True: 701, False: 1700}  # by "is a Float"


def _result_processor(column_type: Any, dialect: Dialect) -> Processor:
    impl = column_type.dialect_impl(dialect)
    if dialect.name == "postgresql" and isinstance(column_type, Numeric | Float):
        return impl.result_processor(dialect, _PG_NUMERIC_OIDS[isinstance(column_type, Float)])  # type: ignore[no-any-return]
    return impl.result_processor(dialect, None)  # type: ignore[no-any-return]


async def run(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> list[Row]:
    """Execute with one set of parameters; the rows of a SELECT as dicts (none otherwise)."""
    compiled = prepared.compiled(conn.dialect, tuple(sorted(params)))
    driver = await _driver(conn) if compiled.direct else None
    if driver is None:
        result = await conn.execute(prepared.statement, dict(params))
        return [dict(r._mapping) for r in result] if result.returns_rows else []
    return [_row(compiled, values) for values in await _fetch(driver, compiled, params)]


async def run_values(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> list[list[Any]]:
    """:func:`run` for a SELECT whose rows the caller unpacks by position: each row a list of its
    columns' values (the 250 rows of a work-list page's observations spare a dict each)."""
    compiled = prepared.compiled(conn.dialect, tuple(sorted(params)))
    driver = await _driver(conn) if compiled.direct else None
    if driver is None:
        return [list(r) for r in await conn.execute(prepared.statement, dict(params))]
    processed = [(i, process) for i, process in enumerate(compiled.results) if process is not None]
    out = []
    for row in await _fetch(driver, compiled, params):
        values = list(row)
        for i, process in processed:
            values[i] = process(values[i])
        out.append(values)
    return out


async def _fetch(driver: Any, compiled: _Compiled, params: Mapping[str, Any]) -> Sequence[Any]:
    """The statement run on the driver; the rows as it returns them (unprocessed)."""
    args = _args(compiled, params)
    try:
        if isinstance(driver, _Sqlite):
            cursor = driver.connection.execute(compiled.sql, args)
            rows = cursor.fetchall() if compiled.columns else ()
            cursor.close()
        elif compiled.columns:
            rows = await driver.fetch(compiled.sql, *args)
        else:
            await driver.execute(compiled.sql, *args)
            rows = ()
    except _DRIVER_ERRORS as exc:
        raise _translated(exc, compiled, args) from exc
    return rows


async def run_count(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> int:
    """Execute a statement that returns no rows (INSERT, UPDATE, DELETE); how many rows it changed."""
    compiled = prepared.compiled(conn.dialect, tuple(sorted(params)))
    driver = await _driver(conn) if compiled.direct else None
    if driver is None:
        return int((await conn.execute(prepared.statement, dict(params))).rowcount)
    args = _args(compiled, params)
    try:
        if isinstance(driver, _Sqlite):
            cursor = driver.connection.execute(compiled.sql, args)
            count = int(cursor.rowcount)
            cursor.close()
            return count
        status = await driver.execute(compiled.sql, *args)  # asyncpg: the command tag, "INSERT 0 1"
    except _DRIVER_ERRORS as exc:
        raise _translated(exc, compiled, args) from exc
    return int(str(status).rsplit(" ", 1)[-1])


async def run_many(conn: AsyncConnection, prepared: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute once per parameter set (an ``executemany``); every set has the same names."""
    if not rows:
        return
    compiled = prepared.compiled(conn.dialect, tuple(sorted(rows[0])))
    driver = await _driver(conn) if compiled.direct else None
    if driver is None:
        await conn.execute(prepared.statement, [dict(r) for r in rows])
        return
    batch = _batch_args(compiled, rows)
    try:
        if isinstance(driver, _Sqlite):
            driver.connection.executemany(compiled.sql, batch).close()
        else:
            await driver.executemany(compiled.sql, batch)
    except _DRIVER_ERRORS as exc:
        raise _translated(exc, compiled, batch) from exc


@dataclass(frozen=True, slots=True)
class _Sqlite:
    connection: Any  # sqlite3.Connection


async def connections(conn: AsyncConnection) -> tuple[Any, Any]:
    """The driver's connection and SQLAlchemy's adapter of it, under ``conn``.

    Kept in ``conn.info`` (which lives as long as the pooled connection): asking
    SQLAlchemy for them costs a greenlet hop each time.
    """
    found = conn.info.get(_CONNECTIONS)
    if found is None:
        raw = await conn.get_raw_connection()
        found = conn.info[_CONNECTIONS] = (raw.driver_connection, raw.dbapi_connection)
    return found  # type: ignore[no-any-return]


async def _driver(conn: AsyncConnection) -> Any:
    """The driver connection when statements may go straight to it, else ``None``."""
    if conn.sync_engine.echo:  # logging every statement: let SQLAlchemy run (and log) them
        return None
    driver, adapter = await connections(conn)
    if isinstance(driver, InlineConnection):
        sqlite = driver.sqlite
        return _Sqlite(sqlite) if sqlite is not None else None
    if conn.dialect.driver != "asyncpg":
        return None
    if getattr(adapter, "_transaction", None) is None and conn.in_transaction():
        # SQLAlchemy began the transaction but its adapter sends BEGIN with the first statement it
        # runs: send it here the way the adapter does (its own coroutine, no greenlet), so that
        # the first statement of a transaction goes to the driver too
        start = getattr(adapter, "_start_transaction", None)
        if start is None or getattr(adapter, "isolation_level", None) == "autocommit":
            return None
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await start()
    return driver if getattr(adapter, "_transaction", None) is not None else None


def _args(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    args = []
    defaults = compiled.defaults
    for name, process in zip(compiled.order, compiled.binds, strict=True):
        value = params[name] if name in params else defaults.get(name)
        args.append(process(value) if process is not None else value)
    return args


def _batch_args(compiled: _Compiled, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Each row's arguments, as ``_args``, converted column by column (a loop per column, not one
    per row and column: a page of the work-list appends some 200 audit events); a value that is
    the very object the row before held (a request's audit events share one list of roles) is
    converted once, not once a row."""
    defaults = compiled.defaults
    columns: list[list[Any]] = []
    for name, process in zip(compiled.order, compiled.binds, strict=True):
        default = defaults.get(name)
        values = [params.get(name, default) for params in rows]
        if process is not None:
            converted: list[Any] = []
            last, last_converted = _UNSET, None
            for value in values:
                if value is not last:
                    last, last_converted = value, process(value)
                converted.append(last_converted)
            values = converted
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else [()] * len(rows)


_UNSET: Any = object()


def _row(compiled: _Compiled, values: Sequence[Any]) -> Row:
    return {
        name: process(value) if process is not None else value
        for name, process, value in zip(compiled.columns, compiled.results, values, strict=True)
    }


def _translated(exc: Exception, compiled: _Compiled, args: Any) -> Exception:
    """The driver's error as SQLAlchemy would raise it (IntegrityError…), parameters hidden (PHI)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):  # asyncpg: classified by SQLSTATE class, as SQLAlchemy's adapter does
        kind: type[DBAPIError] = (
            IntegrityError if sqlstate.startswith("23")
            else OperationalError if sqlstate.startswith(("08", "40", "53", "57"))
            else DBAPIError
        )
        return kind(compiled.sql, args, exc, hide_parameters=True)
    return DBAPIError.instance(compiled.sql, args, exc, sqlite3.Error, hide_parameters=True)
