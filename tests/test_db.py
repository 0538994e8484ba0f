"""waypost.db's verbs: the one door every named query goes through."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from waypost import db
from waypost.settings import Settings
from waypost.sql import query
from worker.connector import Connector
from worker.rows import Conversation, Inbound, OutboundJob


@pytest.fixture
def pool_settings(database_url: str) -> Settings:
    return Settings.model_construct(database_url=database_url, db_pool_min_size=1, db_pool_max_size=2)


async def test_a_required_row_that_is_missing_is_an_error_by_name(pool_settings: Settings) -> None:
    async with db.create_pool(pool_settings) as pool, pool.connection() as conn:
        assert await db.fetch_optional(conn, "reply_load_conversation", conversation_id=0) is None
        with pytest.raises(db.MissingRow, match="reply_load_conversation"):
            await db.fetch_one(conn, "reply_load_conversation", conversation_id=0)


async def test_one_statement_blocks_and_procrastinates_queries_take_no_begin(database_url: str) -> None:
    """A transaction opened by BEGIN began before its statement; an implicit one begins with it. db.autocommit
    and the worker's connector save the BEGIN and COMMIT round trips, and lend the connection back as it was."""
    alone = "SELECT now() = statement_timestamp() AS alone"
    settings = Settings.model_construct(database_url=database_url, db_pool_min_size=1, db_pool_max_size=1)
    async with db.create_pool(settings) as pool:
        async with pool.connection() as conn:
            assert not (await (await conn.execute(alone)).fetchall())[0]["alone"]  # BEGIN went first
        async with db.autocommit(pool) as conn:
            assert (await (await conn.execute(alone)).fetchall())[0]["alone"]
            async with conn.transaction():  # what must be atomic still can be
                assert not (await (await conn.execute(alone)).fetchall())[0]["alone"]
        async with pool.connection() as conn:
            assert not conn.autocommit
        connector = Connector()
        await connector.open_async(pool=pool)
        assert (await connector.execute_query_one_async(alone))["alone"]
        await connector.close_async()
        async with pool.connection() as conn:
            assert not conn.autocommit and not conn.closed


async def test_a_parameter_the_query_does_not_take_is_refused(pool_settings: Settings) -> None:
    async with db.create_pool(pool_settings) as pool, pool.connection() as conn:
        with pytest.raises(TypeError, match="conversation_idd"):
            await db.fetch_optional(conn, "reply_load_conversation", conversation_idd=0)


async def test_typed_rows_are_built_from_the_query(pool_settings: Settings, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        conversation_id = setup.execute(
            "INSERT INTO conversations (phone_number_id, wa_id, contact_name) VALUES ('1', '2', 'Ann') RETURNING id"
        ).fetchone()[0]
    async with db.create_pool(pool_settings) as pool, pool.connection() as conn:
        row = await db.fetch_one(conn, "reply_load_conversation", Conversation, conversation_id=conversation_id)
        assert (row.id, row.wa_id, row.contact_name) == (conversation_id, "2", "Ann")
        assert await db.fetch_value(conn, "schema_yoyo_table_exists") is True


@pytest.mark.parametrize(
    ("row", "name", "params"),
    [
        (Conversation, "reply_load_conversation", {"conversation_id": 0}),
        (Inbound, "reply_load_message", {"message_id": 0}),
        (OutboundJob, "outbound_job_start", {"outbound_job_id": 0}),
    ],
)
def test_typed_rows_have_exactly_the_columns_of_their_query(
    row: type, name: str, params: dict, database_url: str
) -> None:
    with db.connect_sync(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(query(name), params)
        assert cursor.description is not None
        assert [column.name for column in cursor.description] == [field.name for field in dataclasses.fields(row)]
