"""Feed benchmark: what the first page of one customer's feed costs with 10 entries and with 10,000.

    .venv/bin/python bench/feed.py [--per-page 10] [--rounds 300]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/feed.py

Runs the activities service layer (`commands.feed`, what the `feed` RPC runs) on a scratch
database migrated like the real one (SQLite file, or a throwaway PostgreSQL schema), holding
one customer with 10 entries, one with 10,000, and 20 others with 500 each. The feed pages
by a keyset on (customer, date, id), so the first page reads `per_page + 1` index entries
whatever the feed's length: both figures should be about the same, and so should a page deep
in the long feed. The query plan of the long feed's first page is printed too.
"""
import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from roster import migrations  # noqa: E402
from roster.database import make_engine  # noqa: E402
from roster.uow import UnitOfWork  # noqa: E402
from services.activities import commands  # noqa: E402
from services.activities.models import Base, FeedEntry, bookkeeping  # noqa: E402
from tools.isolation import drop_schemas, is_postgres  # noqa: E402

TYPES = ("event", "thread", "note", "call", "mrr_movement", "transaction")
SHORT, LONG = "cus_short", "cus_long"
OTHERS = 20
OTHER_ENTRIES = 500


def seed(sessions, customer_uuid: str, count: int, rng: random.Random) -> None:
    """Add `count` feed entries to one customer, dated over three years."""
    start = datetime(2022, 1, 1, tzinfo=timezone.utc)
    rows = []
    for n in range(count):
        kind = rng.choice(TYPES)
        rows.append({"uuid": f"act_{customer_uuid}_{n}", "fact": f"bench:{customer_uuid}:{n}",
                     "customer_uuid": customer_uuid, "type": kind, "kind": kind,
                     "date": start + timedelta(minutes=rng.randrange(3 * 365 * 24 * 60)),
                     "description": f"Entry {n} of {customer_uuid}", "source_id": f"src_{n}",
                     "created_at": start})
    with sessions() as session:
        for chunk in range(0, len(rows), 2000):
            session.execute(insert(FeedEntry), rows[chunk:chunk + 2000])
        session.commit()


def timed(call, rounds: int) -> dict:
    """Run `call` `rounds` times after a warm-up; return the median and p95 in milliseconds."""
    for _ in range(10):
        call()
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return {"median": statistics.median(samples), "p95": samples[int(len(samples) * 0.95) - 1]}


def plan(engine, per_page: int) -> str:
    """Return the database's plan for the long feed's first page."""
    query = ("SELECT * FROM feed_entries WHERE customer_uuid = :c "
             "ORDER BY date DESC, id DESC LIMIT :n")
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(text("EXPLAIN QUERY PLAN " + query), {"c": LONG, "n": per_page + 1})
            return "\n".join(f"  {row[-1]}" for row in rows)
        rows = connection.execute(text("EXPLAIN ANALYZE " + query), {"c": LONG, "n": per_page + 1})
        return "\n".join(f"  {row[0]}" for row in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-page", type=int, default=10)  # a full page for both feeds
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)

    url = os.environ.get("DATABASE_URL", "")
    scratch = tempfile.TemporaryDirectory()
    prefix = None
    if is_postgres(url):
        prefix = f"bench_feed_{secrets.token_hex(4)}_"
        engine = make_engine(url, schema=f"{prefix}activities")
    else:
        engine = make_engine(f"sqlite:///{Path(scratch.name) / 'activities.db'}")
    try:
        migrations.upgrade(engine, "activities", Base.metadata)
        sessions = sessionmaker(engine, expire_on_commit=False)
        uow = UnitOfWork(sessions, bookkeeping)
        rng = random.Random(7)
        began = time.perf_counter()
        seed(sessions, SHORT, 10, rng)
        seed(sessions, LONG, 10_000, rng)
        for n in range(OTHERS):
            seed(sessions, f"cus_other_{n}", OTHER_ENTRIES, rng)
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE feed_entries"))
        total = 10 + 10_000 + OTHERS * OTHER_ENTRIES
        print(f"{engine.dialect.name}: {total:,} feed entries seeded in {time.perf_counter() - began:.1f}s; "
              f"per_page={args.per_page}, {args.rounds} rounds each\n")

        deep = commands.feed(uow, LONG, per_page=200)
        for _ in range(24):  # a cursor about 5,000 entries into the long feed
            deep = commands.feed(uow, LONG, cursor=deep["cursor"], per_page=200)
        scenarios = [
            ("first page, 10 entries", lambda: commands.feed(uow, SHORT, per_page=args.per_page)),
            ("first page, 10,000 entries", lambda: commands.feed(uow, LONG, per_page=args.per_page)),
            ("first page, 10,000 entries, types=note,call",
             lambda: commands.feed(uow, LONG, types="note,call", per_page=args.per_page)),
            ("page ~5,000 entries deep, 10,000 entries",
             lambda: commands.feed(uow, LONG, cursor=deep["cursor"], per_page=args.per_page)),
        ]
        print(f"{'scenario':<46} {'median ms':>10} {'p95 ms':>8}")
        for name, call in scenarios:
            figures = timed(call, args.rounds)
            print(f"{name:<46} {figures['median']:>10.2f} {figures['p95']:>8.2f}")
        print(f"\nplan of the 10,000-entry first page:\n{plan(engine, args.per_page)}")
    finally:
        engine.dispose()
        if prefix:
            drop_schemas(url, prefix)
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
