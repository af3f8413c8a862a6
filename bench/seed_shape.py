"""The backfill on a table shaped like the production one: 1,000,000 papers with the 12 indexes
the DocTrove table carries (primary key, unique (source, source_id), btree on source, source_id,
primary_date and (source, primary_date), BRIN on primary_date, GIN on authors, GiST on the 2D
point, the two partial indexes of the 2D work, and the pending partial index), autovacuum on.
Measures fetch+write ms per batch of the current approach (baseline.py) and of embed_pending
side by side on that table, then lets 4 workers finish the backfill, and prints the table's and
each index's size before and after. Run by `make bench` after bench.py; writes
bench/results/seed_shape.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import baseline
import bench

INDEXES = [
    "CREATE UNIQUE INDEX papers_source_key ON doctrove_papers (doctrove_source, doctrove_source_id)",
    "CREATE INDEX papers_source ON doctrove_papers (doctrove_source)",
    "CREATE INDEX papers_source_id ON doctrove_papers (doctrove_source_id)",
    "CREATE INDEX papers_primary_date ON doctrove_papers (doctrove_primary_date)",
    "CREATE INDEX papers_source_date ON doctrove_papers (doctrove_source, doctrove_primary_date)",
    "CREATE INDEX papers_primary_date_brin ON doctrove_papers USING brin (doctrove_primary_date)",
    "CREATE INDEX papers_authors ON doctrove_papers USING gin (doctrove_authors)",
    "CREATE INDEX papers_point ON doctrove_papers USING gist (doctrove_embedding_2d)",
    # The 2D projection's queue: embedded papers without a point, and papers with one.
    "CREATE INDEX papers_needing_2d ON doctrove_papers (doctrove_paper_id) "
    "WHERE doctrove_embedding IS NOT NULL AND doctrove_embedding_2d IS NULL",
    "CREATE INDEX papers_with_2d ON doctrove_papers (doctrove_primary_date) WHERE doctrove_embedding_2d IS NOT NULL",
    "CREATE INDEX papers_pending ON doctrove_papers (doctrove_paper_id) "
    "WHERE doctrove_embedding IS NULL AND doctrove_title IS NOT NULL AND doctrove_title <> ''",
]


def load(n):
    bench.sql("CREATE EXTENSION IF NOT EXISTS doctrove_embed CASCADE")
    bench.sql("DROP TABLE IF EXISTS doctrove_papers")
    bench.sql(
        """CREATE TABLE doctrove_papers (
               doctrove_paper_id bigint PRIMARY KEY,
               doctrove_source text NOT NULL,
               doctrove_source_id text NOT NULL,
               doctrove_title text,
               doctrove_abstract text,
               doctrove_authors text[],
               doctrove_primary_date date,
               doctrove_embedding vector(1536),
               doctrove_embedding_2d point,
               embedding_model_version text,
               updated_at timestamptz DEFAULT now())"""
    )
    bench.sql(
        """INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_source, doctrove_source_id, doctrove_title,
                                        doctrove_abstract, doctrove_authors, doctrove_primary_date)
           SELECT g, CASE WHEN g %% 10 = 0 THEN 'openalex' ELSE 'arxiv' END, 'id-' || g,
                  'On ' || w[1 + g %% 60] || ' ' || w[1 + g * 7 %% 60] || ' ' || g,
                  left(array_to_string(ARRAY(SELECT w[1 + (g::bigint * 7919 + i * 104729) %% array_length(w, 1)]
                                             FROM generate_series(1, 260) i), ' '), 1000 + g * 37 %% 501),
                  ARRAY['Author ' || g %% 5000, 'Author ' || g %% 7919],
                  date '1990-01-01' + (g %% 12000)
           FROM generate_series(1, %s) g, (SELECT %s::text[] AS w) words""",
        (n, bench.WORDS),
    )
    for statement in INDEXES:
        bench.sql(statement)
    bench.sql("VACUUM ANALYZE doctrove_papers")


def sizes():
    rows = bench.sql(
        """SELECT 'table (heap and TOAST)', pg_table_size('doctrove_papers')
           UNION ALL
           SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
           WHERE indrelid = 'doctrove_papers'::regclass ORDER BY 1"""
    )
    return {name: size for name, size in rows}


def fetch_write(batches):
    values = sorted(b["fetch_ms"] + b["db_ms"] for b in batches)
    return {"batches": len(values), "median_ms": round(statistics.median(values), 1),
            "p95_ms": round(values[min(len(values) - 1, int(0.95 * len(values)))], 1)}


def embed_pending_batches(seconds):
    conn = bench.connect()
    cur = conn.cursor()
    batches = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        cur.execute("SELECT successful_embeddings, fetch_ms, db_ms FROM embed_pending(250)")
        done, fetch_ms, db_ms = cur.fetchone()
        if done == 0:
            break
        batches.append({"fetch_ms": fetch_ms, "db_ms": db_ms})
    conn.close()
    return batches


def finish_with_workers(limit_seconds):
    bench.restart_with({"doctrove_embed.workers": 4, "doctrove_embed.batch_size": 250})
    bench.sql("ALTER SYSTEM SET doctrove_embed.enabled = on")
    bench.sql("SELECT pg_reload_conf()")
    started = time.monotonic()
    while time.monotonic() - started < limit_seconds:
        time.sleep(2)
        if bench.sql("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL")[0][0] == 0:
            break
    bench.sql("ALTER SYSTEM SET doctrove_embed.enabled = off")
    bench.sql("SELECT pg_reload_conf()")
    return time.monotonic() - started


def mb(size):
    return f"{size / 1048576:,.0f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30, help="each side-by-side measurement")
    args = parser.parse_args()
    mock = subprocess.Popen([f"{bench.ROOT}/target/release/doctrove-mock", "--listen", f"127.0.0.1:{bench.MOCK_PORT}"],
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        bench.start_cluster(0)  # autovacuum on, fsync on
        print(f"seed-shaped table: loading {args.papers:,} papers and 12 indexes", flush=True)
        started = time.monotonic()
        load(args.papers)
        print(f"  loaded in {time.monotonic() - started:.0f} s", flush=True)
        before = sizes()
        bench.set_api("seed_shape")
        base = fetch_write(baseline.run(bench.DSN, f"{bench.MOCK}/s=seed_baseline/v1", args.seconds)["batches"])
        ours = fetch_write(embed_pending_batches(args.seconds))
        took = finish_with_workers(3600)
        after = sizes()
    finally:
        bench.stop_cluster()
        mock.terminate()
    print(f"\nseed-shaped table, {args.papers:,} papers, 12 indexes: fetch+write ms per batch of 250")
    print("| run | batches | median ms | p95 ms |\n|---|---|---|---|")
    print(f"| baseline (executemany) | {base['batches']} | {base['median_ms']} | {base['p95_ms']} |")
    print(f"| embed_pending(250) | {ours['batches']} | {ours['median_ms']} | {ours['p95_ms']} |")
    print(f"\nrest of the backfill with 4 workers: {took:.0f} s")
    print("\n| relation | MB before | MB after |\n|---|---|---|")
    for name in before:
        print(f"| {name} | {mb(before[name])} | {mb(after.get(name, 0))} |")
    os.makedirs(os.path.join(bench.ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(bench.ROOT, "bench", "results", "seed_shape.json")
    with open(out, "w") as f:
        json.dump({"papers": args.papers, "baseline": base, "embed_pending": ours, "workers_seconds": round(took),
                   "sizes_before": before, "sizes_after": after}, f, indent=2)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    sys.exit(main())
