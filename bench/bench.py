"""doctrove_embed's throughput benchmark: the extension (embed_pending in a loop, and 1, 4 and
16 background workers) against the current approach (baseline.py), on a cluster of its own,
with the project's mock embeddings server at a chosen latency. Prints a table and writes the
same as JSON to bench/results/latest.json. Run through `make bench`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg2

import baseline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = "/tmp/doctrove_embed_bench"
PORT = 55460
MOCK_PORT = 18189
MOCK = f"http://127.0.0.1:{MOCK_PORT}"
DSN = f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres"
FULL_BACKFILL = 13_600_000

WORDS = (
    "we propose a novel method for learning representations of graphs using attention networks "
    "results show that our approach outperforms existing baselines on benchmark datasets in "
    "accuracy and efficiency the model is trained end to end with stochastic gradient descent "
    "and evaluated on classification regression and retrieval tasks across several domains "
    "including physics biology chemistry astronomy economics and computer vision experiments "
    "demonstrate robustness to noise scalability to millions of nodes and interpretability"
).split()


def lib(command, *args):
    subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/lib.sh"; {command} "$@"', "bash", *args], check=True)


def start_cluster(workers):
    conf = [
        "shared_preload_libraries = 'doctrove_embed'",
        "fsync = on",
        "max_worker_processes = 40",
        "shared_buffers = '512MB'",
        "doctrove_embed.database = 'postgres'",
        f"doctrove_embed.workers = {workers}",
        "doctrove_embed.enabled = off",
        "doctrove_embed.naptime_ms = 1000",
        f"doctrove_embed.api_base_url = '{MOCK}/s=bench/v1'",
        "doctrove_embed.api_key = 'sk-bench'",
    ]
    lib("cluster_start", CLUSTER, str(PORT), *conf)


def stop_cluster():
    lib("cluster_stop", CLUSTER)


def restart_with(settings):
    """Applies settings with ALTER SYSTEM and restarts (the number of workers needs it)."""
    for name, value in settings.items():
        sql(f"ALTER SYSTEM SET {name} = %s", (str(value),))
    lib("cluster_restart", CLUSTER)


def connect():
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    return conn


def sql(query, args=None):
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def load_papers(n):
    """The papers, kept in a template table so each run starts from the same backlog."""
    sql("CREATE EXTENSION IF NOT EXISTS doctrove_embed CASCADE")
    sql("DROP TABLE IF EXISTS papers_template, doctrove_papers")
    sql(
        """CREATE TABLE papers_template AS
           SELECT g AS doctrove_paper_id, 'On ' || w[1 + g %% 60] || ' ' || w[1 + g * 7 %% 60] || ' ' || g AS doctrove_title,
                  left(array_to_string(ARRAY(SELECT w[1 + (g * 7919 + i * 104729) %% array_length(w, 1)]
                                             FROM generate_series(1, 260) i), ' '), 1000 + g * 37 %% 501) AS doctrove_abstract
           FROM generate_series(1, %s) g, (SELECT %s::text[] AS w) words""",
        (n, WORDS),
    )
    reset_papers()


def reset_papers():
    sql("DROP TABLE IF EXISTS doctrove_papers")
    sql(
        """CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
           doctrove_abstract text, doctrove_embedding vector(1536), embedding_model_version text,
           updated_at timestamptz DEFAULT now())"""
    )
    sql("INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract) SELECT * FROM papers_template")
    sql("CREATE INDEX ON doctrove_papers (doctrove_paper_id) WHERE doctrove_embedding IS NULL")
    sql("VACUUM ANALYZE doctrove_papers")


def embedded():
    return sql("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NOT NULL")[0][0]


def mock_stats(scope):
    with urllib.request.urlopen(f"{MOCK}/stats/{scope}") as response:
        return json.loads(response.read())


def set_api(scope, switches=""):
    sql(f"ALTER SYSTEM SET doctrove_embed.api_base_url = '{MOCK}/s={scope}/{switches}v1'")
    sql("SELECT pg_reload_conf()")


def summary(name, papers, seconds, batches=None, rss=None, **more):
    row = {"run": name, "papers": papers, "seconds": round(seconds, 2),
           "papers_per_s": round(papers / seconds, 1) if seconds else 0.0}
    row["papers_per_min"] = round(row["papers_per_s"] * 60)
    if batches:
        for key in ("fetch_ms", "api_ms", "db_ms"):
            values = sorted(b[key] for b in batches)
            row[key + "_median"] = round(statistics.median(values), 1)
            row[key + "_p95"] = round(values[min(len(values) - 1, int(0.95 * len(values)))], 1)
        db = sorted(b["fetch_ms"] + b["db_ms"] for b in batches)
        row["db_total_ms_median"] = round(statistics.median(db), 1)
    if rss:
        row.update(rss)
    row.update(more)
    print(f"  {name}: {papers:,} papers in {seconds:.1f} s = {row['papers_per_min']:,}/min", flush=True)
    return row


def run_baseline(name, seconds, switches=""):
    reset_papers()
    result = baseline.run(DSN, f"{MOCK}/s=baseline/{switches}v1", seconds)
    return summary(name, result["papers"], result["seconds"], result["batches"])


def run_embed_pending(name, seconds, switches=""):
    reset_papers()
    set_api("embed_pending", switches)
    conn = connect()
    cur = conn.cursor()
    batches = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        cur.execute("SELECT successful_embeddings, fetch_ms, api_ms, db_ms FROM embed_pending(250)")
        done, fetch_ms, api_ms, db_ms = cur.fetchone()
        if done == 0:
            break
        batches.append({"papers": done, "fetch_ms": fetch_ms, "api_ms": api_ms, "db_ms": db_ms})
    elapsed = time.monotonic() - started
    conn.close()
    return summary(name, sum(b["papers"] for b in batches), elapsed, batches)


class RssSampler(threading.Thread):
    """Samples the workers' memory (kB) every half second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.max = {"worker_rss_mb": 0.0, "worker_rss_anon_mb": 0.0}

    def pids(self):
        return [r[0] for r in sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'doctrove_embed worker'")]

    def run(self):
        while not self.stop.is_set():
            for pid in self.pids():
                try:
                    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
                except OSError:
                    continue
                for key, name in (("VmRSS", "worker_rss_mb"), ("RssAnon", "worker_rss_anon_mb")):
                    mb = int(fields[key].split()[0]) / 1024
                    self.max[name] = round(max(self.max[name], mb), 1)
            time.sleep(0.5)


def token_rate(before, after, elapsed):
    """Tokens per minute the mock answered, and its 429s."""
    tokens = after["tokens"] - before["tokens"]
    requests = after["requests"] - before["requests"]
    limited = after["rate_limited"] - before["rate_limited"]
    return {"tokens_per_min": round(tokens / elapsed * 60), "requests": requests, "answered_429": limited,
            "percent_429": round(100.0 * limited / max(requests, 1), 2)}


def batch_costs(before, after, elapsed):
    """Papers and tokens sent live and through the Batch API, and what they cost at $0.02 (live)
    and $0.01 (batch) per million tokens."""
    live = after["tokens"] - before["tokens"]
    batch = after["batch_tokens"] - before["batch_tokens"]
    return {"live_tokens": live, "batch_tokens": batch, "batch_papers": after["batch_inputs"] - before["batch_inputs"],
            "live_papers": after["inputs"] - before["inputs"], "paid_twice": after["paid_twice"],
            "dollars": round(live * 0.02 / 1e6 + batch * 0.01 / 1e6, 4)}


def run_workers(name, workers, seconds, switches="", settings=None, measure=None):
    """The workers on the whole backlog for at most `seconds`; `measure(before, after, elapsed)`
    adds figures from the mock's counters to the row."""
    restart_with({"doctrove_embed.workers": workers, "doctrove_embed.batch_size": 250,
                  "doctrove_embed.max_tokens_per_minute": 0, "doctrove_embed.batch_api": "off", **(settings or {})})
    reset_papers()
    set_api(name.replace(" ", "_"), switches)
    scope = name.replace(" ", "_")
    sampler = RssSampler()
    sampler.start()
    before = mock_stats(scope)
    sql("ALTER SYSTEM SET doctrove_embed.enabled = on")
    sql("SELECT pg_reload_conf()")
    started = time.monotonic()
    total = sql("SELECT count(*) FROM doctrove_papers")[0][0]
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        if embedded() >= total:
            break
    elapsed = time.monotonic() - started
    done = embedded()
    after = mock_stats(scope)
    sampler.stop.set()
    sql("ALTER SYSTEM SET doctrove_embed.enabled = off")
    sql("SELECT pg_reload_conf()")
    more = measure(before, after, elapsed) if measure else {}
    return summary(name, done, elapsed, rss=sampler.max, **more)


def backlog_tokens():
    """The backlog's tokens as the mock counts them (a token per 4 bytes of each input)."""
    return sql("SELECT sum((octet_length(doctrove_embed.input_text(doctrove_title, doctrove_abstract)) + 3) / 4)::bigint "
               "FROM papers_template")[0][0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60, help="cap of each zero-latency run")
    parser.add_argument("--latency-ms", type=int, default=4400)
    parser.add_argument("--only", default="zero,latency,tpm,batch,memory",
                        help="comma-separated groups of runs: zero, latency, tpm, batch, memory")
    args = parser.parse_args()

    mock = subprocess.Popen([f"{ROOT}/target/release/doctrove-mock", "--listen", f"127.0.0.1:{MOCK_PORT}"],
                            stdout=subprocess.DEVNULL)
    results = []
    try:
        time.sleep(0.5)
        if mock.poll() is not None:
            sys.exit(f"the mock could not start on port {MOCK_PORT} (is another one running?)")
        start_cluster(0)
        print(f"loading {args.papers:,} papers", flush=True)
        load_papers(args.papers)
        lat = f"latency={args.latency_ms}/"
        groups = set(args.only.split(","))
        if "zero" in groups:
            print("zero-latency mock", flush=True)
            results.append(run_baseline("baseline", args.seconds))
            results.append(run_embed_pending("embed_pending(250)", args.seconds))
            for workers in (1, 4, 16):
                results.append(run_workers(f"workers {workers}", workers, args.seconds))
        if "latency" in groups:
            print(f"mock with {args.latency_ms} ms latency", flush=True)
            restart_with({"doctrove_embed.workers": 0})
            results.append(run_baseline(f"baseline, {args.latency_ms} ms", args.seconds, lat))
            results.append(run_workers(f"workers 16, {args.latency_ms} ms", 16, args.seconds, lat))
        if "tpm" in groups:
            print("mock enforcing 1,000,000 tokens/min, for 2 minutes", flush=True)
            results.append(run_workers("workers 16, 1M tokens per min", 16, 120, "tpm=1000000/",
                                       {"doctrove_embed.max_tokens_per_minute": 1_000_000}, token_rate))
        if "batch" in groups:
            print("the Batch API beside the live path, live limited to 1,000,000 tokens/min, batches done in 5 s", flush=True)
            # The whole backlog with batch_api = on: 16 workers, the mock enforcing 1M live tokens a
            # minute and finishing each batch 5 s after it is created.
            results.append(run_workers("workers 16 + Batch API, 1M tokens per min", 16, 1800, "tpm=1000000/batch_delay=5000/",
                                       {"doctrove_embed.max_tokens_per_minute": 1_000_000, "doctrove_embed.batch_api": "on",
                                        "doctrove_embed.batch_api_min_papers": 10_000, "doctrove_embed.batch_api_poll_ms": 1000},
                                       batch_costs))
            results[-1]["backlog_tokens"] = backlog_tokens()
        if "memory" in groups:
            print("batch_size 2048: worker memory", flush=True)
            results.append(run_workers("workers 4, batch 2048", 4, args.seconds, "", {"doctrove_embed.batch_size": 2048}))
    finally:
        stop_cluster()
        mock.terminate()
    report(results, args)


def report(results, args):
    by = {r["run"]: r for r in results}
    base = by.get("baseline", {}).get("papers_per_s")
    base_lat = by.get(f"baseline, {args.latency_ms} ms", {}).get("papers_per_s")
    for r in results:
        ref = base_lat if f"{args.latency_ms} ms" in r["run"] else base
        r["ratio_to_baseline"] = round(r["papers_per_s"] / ref, 1) if ref else None
        r["full_backfill_hours"] = round(FULL_BACKFILL / r["papers_per_s"] / 3600, 1) if r["papers_per_s"] else None
    header = f"| run | papers/s | papers/min | x baseline | 13.6M papers | fetch+write ms (median) | fetch ms p50/p95 | API ms p50/p95 | write ms p50/p95 | worker RSS MB (anon) |"
    print()
    print(header)
    print("|" + "---|" * 10)
    for r in results:
        def pair(key):
            return f"{r[key + '_median']}/{r[key + '_p95']}" if key + "_median" in r else ""
        rss = f"{r['worker_rss_mb']} ({r['worker_rss_anon_mb']})" if r.get("worker_rss_mb") else ""
        print(f"| {r['run']} | {r['papers_per_s']:,} | {r['papers_per_min']:,} | {r['ratio_to_baseline']} | "
              f"{r['full_backfill_hours']} h | {r.get('db_total_ms_median', '')} | {pair('fetch_ms')} | {pair('api_ms')} | "
              f"{pair('db_ms')} | {rss} |")
    tpm = by.get("workers 16, 1M tokens per min")
    if tpm:
        print(f"\nrate limit 1,000,000 tokens/min: sustained {tpm['tokens_per_min']:,} tokens/min "
              f"({100 * tpm['tokens_per_min'] / 1_000_000:.1f}%), {tpm['answered_429']} of {tpm['requests']} requests "
              f"answered 429 ({tpm['percent_429']}%)")
    batch = by.get("workers 16 + Batch API, 1M tokens per min")
    if tpm and batch:
        tokens = batch["backlog_tokens"]
        live_minutes = tokens / max(tpm["tokens_per_min"], 1)
        live_dollars = tokens * 0.02 / 1e6
        print(f"\nthe backfill of {args.papers:,} papers ({tokens:,} tokens), live limited to 1,000,000 tokens/min:")
        print("| path | wall time | cost | papers live / batch | paid twice |")
        print("|---|---|---|---|---|")
        print(f"| live path alone (at the measured {tpm['tokens_per_min']:,} tokens/min) | {live_minutes:.1f} min | "
              f"${live_dollars:.4f} | {args.papers:,} / 0 | 0 |")
        print(f"| live path + Batch API (measured) | {batch['seconds'] / 60:.1f} min | ${batch['dollars']:.4f} | "
              f"{batch['live_papers']:,} / {batch['batch_papers']:,} | {batch['paid_twice']} |")
        print(f"13.6M papers at the same tokens per paper: ${FULL_BACKFILL / args.papers * live_dollars:,.2f} live, "
              f"${FULL_BACKFILL / args.papers * batch['dollars']:,.2f} with the Batch API")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", "latest.json")
    with open(out, "w") as f:
        json.dump({"papers": args.papers, "latency_ms": args.latency_ms, "cores": os.cpu_count(),
                   "results": results}, f, indent=2)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    sys.exit(main())
