"""The data sets of the backup benchmark, built deterministically from real content on this machine:
a tree of large and small files copied from /usr, and a PostgreSQL database of orders, customers
and events whose text is prose sampled from the licences and copyright files under /usr/share.

Synthetic-repetitive data (pgbench's, or one file copied many times) compresses 50-170x and makes
every tool look fast; these aim for the 3-6x of real data, and the benchmark reports what they got.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

LARGE_ROOT = Path("/usr/lib")
SMALL_ROOT = Path("/usr/share")
LARGE_MIN_BYTES = 4 << 20
SMALL_MAX_BYTES = 1 << 20
# At scale 1: about 600 MiB of large files and 400 MiB (~45 k) of small ones.
LARGE_BUDGET_BYTES = 600 << 20
SMALL_BUDGET_BYTES = 400 << 20
PROSE = [Path("/usr/share/common-licenses"), Path("/usr/share/doc")]
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{0,20}")

# At scale 1 the database is about 1 GiB with its indexes.
ROWS = {"customers": 220_000, "orders": 1_300_000, "events": 2_000_000}
PHRASES = 400_000


# --- the files tree ---------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[tuple[Path, int]]:
    """Regular files under `root` on its filesystem, in a sorted (deterministic) order."""
    device = root.stat().st_dev
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.lstat(os.path.join(folder, d)).st_dev == device)
        for name in sorted(names):
            path = Path(folder, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
                yield path, st.st_size


def pick_files(scale: float) -> list[tuple[Path, str]]:
    """The (source, relative destination) pairs of the tree at `scale`."""
    chosen: list[tuple[Path, str]] = []
    for root, prefix, keep, budget in (
        (LARGE_ROOT, "large", lambda size: size >= LARGE_MIN_BYTES, LARGE_BUDGET_BYTES),
        (SMALL_ROOT, "small", lambda size: 0 < size < SMALL_MAX_BYTES, SMALL_BUDGET_BYTES),
    ):
        left = int(budget * scale)
        for path, size in _walk(root):
            if keep(size) and size <= left:
                chosen.append((path, f"{prefix}/{path.relative_to(root)}"))
                left -= size
            if left < (LARGE_MIN_BYTES if prefix == "large" else 512):
                break
    return chosen


def build_tree(dest: Path, scale: float) -> dict[str, Any]:
    """Copy the chosen files into `dest`; the tree's file count and bytes, large and small."""
    counts = {"large": [0, 0], "small": [0, 0]}
    for source, relative in pick_files(scale):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        entry = counts[relative.split("/", 1)[0]]
        entry[0] += 1
        entry[1] += target.stat().st_size
    return {
        "files": counts["large"][0] + counts["small"][0],
        "bytes": counts["large"][1] + counts["small"][1],
        "large_files": counts["large"][0],
        "large_bytes": counts["large"][1],
        "small_files": counts["small"][0],
        "small_bytes": counts["small"][1],
    }


def warm(tree: Path) -> int:
    """Read every file of `tree` once, so every side runs from the page cache; the bytes read."""
    total = 0
    for folder, _, names in os.walk(tree):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                while chunk := handle.read(1 << 20):
                    total += len(chunk)
    return total


def hash_tree(tree: Path) -> float:
    """CPU seconds of a SHA-256 of every file of `tree` (from the page cache): the per-file
    checksums' own cost, which tar does not pay."""
    started = time.process_time()
    for folder, _, names in os.walk(tree):
        for name in names:
            digest = hashlib.sha256()
            with open(os.path.join(folder, name), "rb", buffering=0) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return time.process_time() - started


# --- the database -----------------------------------------------------------------------------


def prose_words(limit: int = 2_000_000) -> list[str]:
    """Words of real prose in reading order (so frequencies are natural): the licences, then the
    Debian copyright files."""
    words: list[str] = []
    paths = sorted(PROSE[0].iterdir()) + sorted(PROSE[1].glob("*/copyright"))
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        words += _WORD.findall(text)
        if len(words) >= limit:
            break
    return words


def phrases(count: int, seed: int = 11) -> Iterator[tuple[int, str]]:
    """`count` phrases of 3-12 words: half are runs of the prose as written, half words drawn
    from it by frequency (new sentences with the prose's vocabulary)."""
    words = prose_words()
    rng = random.Random(seed)
    for i in range(1, count + 1):
        k = rng.randint(3, 12)
        if i % 2:
            start = rng.randrange(len(words) - k)
            yield i, " ".join(words[start : start + k])
        else:
            yield i, " ".join(rng.choices(words, k=k))


# Row generators: server-side INSERT ... SELECT over generate_series. Text columns join the
# phrases table on multiplicative hashes of the row number (hash joins, no per-row subqueries).
SCHEMA = """
CREATE TABLE phrases (id int PRIMARY KEY, t text NOT NULL);
CREATE TABLE customers (
    id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, country text NOT NULL,
    created_at timestamptz NOT NULL, note text);
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2) NOT NULL,
    currency text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
    shipping_address text NOT NULL, note text);
CREATE TABLE events (
    id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL,
    payload jsonb NOT NULL, message text NOT NULL);
"""

FILL = [
    """
INSERT INTO customers
SELECT g,
       initcap(split_part(a.t, ' ', 1)) || ' ' || initcap(split_part(b.t, ' ', 2)),
       lower(split_part(a.t, ' ', 2)) || '.' || substr(md5(g::text), 1, 7) || '@'
         || (ARRAY['example.com','mail.test','corp.example','shop.test','post.example'])[1 + g % 5],
       (ARRAY['DE','FR','US','GB','NL','SE','PL','ES','IT','JP','BR','IN'])[1 + (g * 7) % 12],
       timestamptz '2019-01-01' + random() * interval '2000 days',
       CASE WHEN g % 3 = 0 THEN NULL ELSE b.t END
FROM generate_series(1, {customers}) g
JOIN phrases a ON a.id = 1 + (g::bigint * 2654435761) % {phrases}
JOIN phrases b ON b.id = 1 + (g::bigint * 40503 + 17) % {phrases}
""",
    """
INSERT INTO orders
SELECT g,
       1 + floor(random() * {customers})::int,
       round((10 + random() ^ 3 * 4000)::numeric, 2),
       (ARRAY['EUR','USD','GBP','SEK','JPY'])[1 + (g * 3) % 5],
       (ARRAY['new','paid','packed','shipped','delivered','returned','cancelled'])
         [1 + floor(random() ^ 2 * 7)::int],
       timestamptz '2021-01-01' + (g::float8 / {orders}) * interval '1400 days'
         + random() * interval '3 hours',
       (1 + g % 997)::text || ' ' || initcap(a.t) || ', '
         || lpad(((g::bigint * 7919) % 99999)::text, 5, '0'),
       CASE WHEN g % 4 = 0 THEN b.t END
FROM generate_series(1, {orders}) g
JOIN phrases a ON a.id = 1 + (g::bigint * 2246822519) % {phrases}
JOIN phrases b ON b.id = 1 + (g::bigint * 3266489917 + 5) % {phrases}
""",
    """
INSERT INTO events
SELECT g,
       1 + floor(random() * {orders})::bigint,
       (ARRAY['view','cart','checkout','payment','shipment','email','refund','review','error'])
         [1 + g % 9],
       timestamptz '2021-01-01' + (g::float8 / {events}) * interval '1400 days'
         + random() * interval '1 hour',
       CASE g % 4
         WHEN 0 THEN jsonb_build_object(
           'ip', '10.' || (g % 256) || '.' || ((g * 7) % 256) || '.' || ((g * 13) % 256),
           'agent', split_part(c.t, ' ', 1) || '/' || (1 + g % 9) || '.' || (g % 31),
           'latency_ms', round(random() * 900))
         WHEN 1 THEN jsonb_build_object(
           'sku', 'SKU-' || ((g * 7) % 99991), 'qty', 1 + g % 5,
           'price', round((random() * 300)::numeric, 2),
           'tags', to_jsonb(string_to_array(lower(c.t), ' ')))
         WHEN 2 THEN jsonb_build_object(
           'error', c.t, 'code', 400 + g % 17, 'retry', g % 2 = 0, 'attempt', 1 + g % 4)
         ELSE jsonb_build_object(
           'from', (ARRAY['new','paid','packed','shipped'])[1 + g % 4],
           'to', (ARRAY['paid','packed','shipped','delivered'])[1 + g % 4],
           'by', 'user' || ((g * 31) % 5000), 'comment', c.t)
       END,
       a.t || '. ' || b.t
FROM generate_series(1, {events}) g
JOIN phrases a ON a.id = 1 + (g::bigint * 2654435761) % {phrases}
JOIN phrases b ON b.id = 1 + (g::bigint * 2246822519 + 3) % {phrases}
JOIN phrases c ON c.id = 1 + (g::bigint * 3266489917 + 7) % {phrases}
""",
]

INDEXES = [
    "CREATE INDEX ON customers (email)",
    "CREATE INDEX ON orders (customer_id)",
    "CREATE INDEX ON orders (created_at)",
    "CREATE INDEX ON events (order_id)",
    "CREATE INDEX ON events (at)",
]


def load_database(dsn: str, scale: float) -> dict[str, Any]:
    """Create and fill the tables through `dsn` (an empty database); rows, sizes and seconds."""
    started = time.monotonic()
    sizes = {name: max(100, int(rows * scale)) for name, rows in ROWS.items()}
    sizes["phrases"] = max(1000, int(PHRASES * min(1.0, scale * 4)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY phrases (id, t) FROM STDIN") as copy:
            for row in phrases(sizes["phrases"]):
                copy.write_row(row)
        conn.execute("ANALYZE phrases")
        conn.execute("SELECT setseed(0.42)")
        for statement in FILL:
            conn.execute(statement.format(**sizes))
        for statement in INDEXES:
            conn.execute(statement)
        conn.execute("DROP TABLE phrases")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    sizes.pop("phrases")
    return {
        "rows": sizes,
        "db_bytes": int(db_bytes[0]) if db_bytes else 0,
        "load_seconds": round(time.monotonic() - started, 1),
    }
