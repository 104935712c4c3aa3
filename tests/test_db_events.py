"""db-events: DDL and large row changes with their times and GTIDs, read from the shipped binlogs (real
MariaDB binlog files in moto S3, decoded by the real mariadb-binlog)."""
from __future__ import annotations

import pytest

from tests.fixtures.binlog_chain import Shipper, utc, wait_for_next_second, z
from tests.fixtures.mariadb import seed_database

SOURCE, OTHER = "events_src", "events_other"


@pytest.fixture
def window(binlog_server, dump_bucket, tmp_path):
    """A DDL, a 2500-row UPDATE and a small INSERT in SOURCE, a DDL in OTHER, shipped; their GTIDs."""
    binlog_server.drop_databases(SOURCE, OTHER)
    seed_database(binlog_server, SOURCE)
    binlog_server.sql(f"CREATE DATABASE {OTHER}")
    since = wait_for_next_second()

    def gtid(statement: str, database: str) -> str:
        binlog_server.sql(statement, database)
        return binlog_server.sql("SELECT @@gtid_binlog_pos")[0][0]
    gtids = {"ddl": gtid("ALTER TABLE customers ADD COLUMN tier VARCHAR(10) NULL", SOURCE),
             "big": gtid("UPDATE invoices SET amount = amount + 1", SOURCE),
             "small": gtid("INSERT INTO customers (name) VALUES ('one row')", SOURCE),
             "other": gtid("CREATE TABLE other_t (id INT PRIMARY KEY)", OTHER)}
    until = utc()
    Shipper(binlog_server, dump_bucket, tmp_path / "ship-state").ship()
    yield z(since), z(until), gtids
    binlog_server.drop_databases(SOURCE, OTHER)


@pytest.fixture
def events(backupctl, dump_bucket, tmp_path):
    def run(*args):
        return backupctl("db-events", "--bucket", dump_bucket, "--binlog-prefix", "binlog",
                         "--log-file", str(tmp_path / "ops.jsonl"), *args)
    return run


def test_ddl_and_large_row_changes_are_listed_with_time_and_gtid(window, events):
    since, until, gtids = window
    result = events("--since", since, "--until", until, "--json")
    listed = [(e["kind"], e["gtid"]) for e in result.json()["events"]]
    assert (result.code, listed) == (0, [("ddl", gtids["ddl"]), ("dml", gtids["big"]), ("ddl", gtids["other"])])
    ddl, big = result.json()["events"][:2]
    assert ("ADD COLUMN tier" in ddl["statement"], ddl["database"], since <= ddl["at"] <= until) == \
        (True, SOURCE, True)
    assert (big["rows"], big["tables"]) == (2500, {f"{SOURCE}.invoices": {"update": 2500}})


def test_min_rows_makes_small_changes_large(window, events):
    since, until, gtids = window
    listed = [e["gtid"] for e in events("--since", since, "--until", until, "--min-rows", "1", "--json",
                                        "--database", SOURCE).json()["events"]]
    assert listed == [gtids["ddl"], gtids["big"], gtids["small"]]


def test_grep_and_database_narrow_the_list(window, events):
    since, until, gtids = window
    grep = events("--since", since, "--until", until, "--grep", "other_t", "--json").json()["events"]
    only = events("--since", since, "--until", until, "--database", OTHER, "--json").json()["events"]
    assert ([e["gtid"] for e in grep], [e["gtid"] for e in only]) == ([gtids["other"]], [gtids["other"]])


def test_a_window_before_the_events_lists_nothing(window, events):
    result = events("--since", "2020-01-01T00:00:00Z", "--until", "2020-01-01T00:10:00Z")
    assert (result.code, "no DDL and no row change" in result.out) == (0, True)


def test_text_output_names_time_gtid_and_statement(window, events):
    since, until, gtids = window
    out = events("--since", since, "--until", until).out
    assert f"{gtids['ddl']}" in out and "DDL  events_src: ALTER TABLE customers ADD COLUMN tier" in out
    assert f"DML  2500 rows: {SOURCE}.invoices 2500 update" in out


def test_a_chain_in_several_index_pages_is_searched_whole(binlog_server, dump_bucket, tmp_path, events):
    binlog_server.drop_databases(SOURCE)
    binlog_server.sql(f"CREATE DATABASE {SOURCE}")
    since = wait_for_next_second()
    gtids = []
    for n in range(5):   # one DDL a binlog file
        binlog_server.sql(f"CREATE TABLE paged_{n} (id INT PRIMARY KEY)", SOURCE)
        gtids.append(binlog_server.sql("SELECT @@gtid_binlog_pos")[0][0])
        binlog_server.sql("FLUSH BINARY LOGS")
    until = utc()
    shipper = Shipper(binlog_server, dump_bucket, tmp_path / "ship-state", page_segments=2)
    shipper.ship()
    try:
        result = events("--since", z(since), "--until", z(until), "--database", SOURCE, "--json")
        assert shipper.index["pages"] >= 2
        assert (result.code, [e["gtid"] for e in result.json()["events"]]) == (0, gtids), result.err
        assert len(result.json()["segments_scanned"]) >= 5
    finally:
        binlog_server.drop_databases(SOURCE)


@pytest.mark.parametrize("args, message", [
    (("--since", "2026-12-02T14:00:00Z", "--until", "2026-12-02T13:00:00Z"), "--until '2026-12-02T13:00:00Z': "
                                                                             "must not be before --since"),
    (("--since", "yesterday", "--until", "2026-12-02T13:00:00Z"), "--since 'yesterday': must be a UTC time"),
    (("--since", "2026-12-02T13:00:00Z", "--until", "2026-12-02T14:00:00Z", "--grep", "("),
     "--grep '(': not a regular expression"),
])
def test_bad_input_is_one_line_and_exit_2(events, dump_bucket, args, message):
    result = events(*args)
    assert (result.code, message in result.err, len(result.err.strip().splitlines())) == (2, True, 1)
