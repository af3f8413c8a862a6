"""Search at scale and search quality, through doctrove_embed.search() and hybrid_search().

Scale: a table of 1,000,000 papers with 1536-dimension vectors (the production column's size)
and an HNSW index built by create_hnsw_index(). No machine here can embed a million texts, so
the vectors are synthetic but shaped like a corpus, in two levels: 1,000 topics of 20 subtopics
each; a paper is its topic's direction (weight 0.35 of its square length), its subtopic's (0.15
to 0.45, drawn per paper) and its own noise (the rest), so its similarity is about 0.35 to the
papers of its topic and 0.5 to 0.7, graded, to those of its subtopic. Each query is one more
member of a subtopic: its vector is the mock's for the query text, and its topic's and
subtopic's directions are drawn around it. (With no level below the topic, every paper of a
topic is equally near its queries, an index's worst case: recall@10 at pgvector's default
candidate list fell to 0.55 there.) For every query: search()'s latency (p50, p95) and
recall@10 against an exact scan of the same filter, with no filter and with filters that 100%,
10% and 1% of the papers pass, at pgvector's default hnsw.ef_search (40) and at 200; the exact
scan's own latency; what the query cache saves; and the papers' API query (a threshold, source
and date filters, 100 results) as one call.

Quality: 2,000 papers of the generated sample embedded by the local model (all-MiniLM-L6-v2)
through embed_pending(). Precision@10 of topic queries with and without
doctrove_embed.query_format = 'Title: {query}' (and the similarity of the on-topic results),
and of queries where exact terms matter (identifiers, names, acronyms, a formula: each written
into ten papers of its field) for vector-only search, text-only ranking and hybrid search.

Run by `make bench` after model_bench.py; writes bench/results/search.json.
"""
import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
import psycopg2

import bench

CLUSTER = "/tmp/doctrove_embed_bench_search"
PORT = 55461
# The quality runs' cluster: its own, so that a --keep run's million papers outlive them.
QUALITY_CLUSTER = "/tmp/doctrove_embed_bench_search_quality"
QUALITY_PORT = 55462
MOCK_PORT = 18191
MODEL_PORT = 18192
MOCK_SCOPE = f"http://127.0.0.1:{MOCK_PORT}/s=search/v1"
MODEL_DIR = os.environ.get("DOCTROVE_MODEL_DIR", "/opt/doctrove_embed/all-MiniLM-L6-v2")
TOPICS = 1000
SUBTOPICS = 20
# Shares of a paper's square length: its topic's direction, and its subtopic's (drawn per paper
# between the two bounds); its own noise has the rest.
TOPIC_SHARE = 0.35
SUBTOPIC_SHARES = (0.15, 0.45)
FIRST_DAY = "1990-01-01"
DAYS = 12_000


def connect(db="postgres", options="", port=PORT):
    conn = psycopg2.connect(f"host=127.0.0.1 port={port} user=postgres dbname={db}", options=options)
    conn.autocommit = True
    return conn


def start_cluster(directory=CLUSTER, port=PORT):
    bench.lib("cluster_start", directory, str(port),
              "shared_preload_libraries = 'doctrove_embed'",
              "doctrove_embed.workers = 0",
              "doctrove_embed.enabled = off",
              f"doctrove_embed.api_base_url = '{MOCK_SCOPE}'",
              "doctrove_embed.api_key = 'sk-bench'",
              "doctrove_embed.query_cache_ttl_s = 3600",
              "shared_buffers = '4GB'",
              "wal_level = minimal",
              "max_wal_senders = 0",
              "max_wal_size = '8GB'",
              "max_parallel_maintenance_workers = 1",
              "max_parallel_workers_per_gather = 1",
              "jit = off")


def mock_vectors(texts, dims):
    """The vectors the mock answers for `texts` (what search() gets for them)."""
    request = urllib.request.Request(
        f"{MOCK_SCOPE}/embeddings",
        json.dumps({"model": "text-embedding-3-small", "input": texts, "dimensions": dims}).encode(),
        {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"})
    with urllib.request.urlopen(request) as reply:
        data = json.load(reply)["data"]
    return np.array([d["embedding"] for d in sorted(data, key=lambda d: d["index"])], dtype=np.float32)


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def copy_vectors(cur, ids, vectors):
    """COPY (id, vector) rows in PostgreSQL's binary format: pgvector's binary form is the
    dimension count (int16), an unused int16 and the float4 components, all big-endian."""
    dims = vectors.shape[1]
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vec_len", ">i4"), ("dims", ">i2"),
                    ("unused", ">i2"), ("values", ">f4", (dims,))])
    rows = np.zeros(len(ids), row)
    rows["fields"], rows["id_len"], rows["id"] = 2, 8, ids
    rows["vec_len"], rows["dims"], rows["values"] = 4 + 4 * dims, dims, vectors
    data = io.BytesIO(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rows.tobytes() + b"\xff\xff")
    cur.copy_expert("COPY doctrove_papers (doctrove_paper_id, doctrove_embedding) FROM STDIN (FORMAT binary)", data)


def around(rng, anchors, share):
    """Directions whose similarity to `anchors` is about sqrt(share): a query is then as near its
    topic's and subtopic's directions as a paper drawn from them is."""
    noise = unit(rng.standard_normal(anchors.shape).astype(np.float32))
    return unit(np.sqrt(share) * unit(anchors) + np.sqrt(1 - share) * noise)


def load_scale(papers, dims, query_vectors, seed):
    """The table: ids 1..papers, each in a topic and a subtopic; query i is a member of topic i's
    first subtopic."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.standard_normal((TOPICS, dims)).astype(np.float32))
    subtopics = unit(rng.standard_normal((TOPICS * SUBTOPICS, dims)).astype(np.float32))
    queries = len(query_vectors)
    middle = sum(SUBTOPIC_SHARES) / 2
    topics[:queries] = around(rng, query_vectors, TOPIC_SHARE)
    subtopics[np.arange(queries) * SUBTOPICS] = around(rng, query_vectors, middle)
    conn = connect()
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS doctrove_embed CASCADE")
    cur.execute("DROP TABLE IF EXISTS doctrove_papers")
    cur.execute(f"""CREATE TABLE doctrove_papers (
                        doctrove_paper_id bigint PRIMARY KEY,
                        doctrove_source text,
                        doctrove_title text,
                        doctrove_abstract text,
                        doctrove_primary_date date,
                        doctrove_embedding vector({dims}))""")
    chunk = 20_000
    for start in range(0, papers, chunk):
        count = min(chunk, papers - start)
        topic = rng.integers(0, TOPICS, count)
        subtopic = topic * SUBTOPICS + rng.integers(0, SUBTOPICS, count)
        share = rng.uniform(*SUBTOPIC_SHARES, count).astype(np.float32)[:, None]
        noise = unit(rng.standard_normal((count, dims)).astype(np.float32))
        vectors = (np.sqrt(TOPIC_SHARE) * topics[topic] + np.sqrt(share) * subtopics[subtopic]
                   + np.sqrt(1 - TOPIC_SHARE - share) * noise)
        copy_vectors(cur, np.arange(start + 1, start + count + 1), unit(vectors))
    # Sources and dates drawn independently of the topics: 1% 'biorxiv', 9% 'openalex', the rest
    # 'arxiv'; dates spread evenly over DAYS days. Only the small heap tuples are rewritten.
    cur.execute(f"""UPDATE doctrove_papers SET
                        doctrove_source = CASE WHEN doctrove_paper_id % 100 = 0 THEN 'biorxiv'
                                               WHEN doctrove_paper_id % 10 = 0 THEN 'openalex' ELSE 'arxiv' END,
                        doctrove_title = 'Paper ' || doctrove_paper_id,
                        doctrove_abstract = '',
                        doctrove_primary_date = date '{FIRST_DAY}' + (doctrove_paper_id * 7919 % {DAYS})::int""")
    cur.execute("CREATE INDEX ON doctrove_papers (doctrove_source)")
    cur.execute("CREATE INDEX ON doctrove_papers (doctrove_primary_date)")
    cur.execute("VACUUM ANALYZE doctrove_papers")
    conn.close()


def build_hnsw():
    conn = connect()
    cur = conn.cursor()
    cur.execute("SET maintenance_work_mem = '12GB'")
    started = time.monotonic()
    cur.execute("SELECT doctrove_embed.create_hnsw_index()")
    took = time.monotonic() - started
    cur.execute("ANALYZE doctrove_papers")
    conn.close()
    return took


def date_after(fraction):
    """The date on or after which `fraction` of the papers fall."""
    return f"(date '{FIRST_DAY}' + {int(DAYS * (1 - fraction))})"


def filters():
    """Name, search() filter, and the same as SQL for the exact scan."""
    conn = connect()
    cur = conn.cursor()
    cur.execute(f"SELECT {date_after(0.10)}::text")
    tenth = cur.fetchone()[0]
    conn.close()
    return [
        ("no filter", None, "true"),
        ("filter passing 100%", {"doctrove_primary_date": {">=": FIRST_DAY}}, f"doctrove_primary_date >= '{FIRST_DAY}'"),
        ("filter passing 10%", {"doctrove_primary_date": {">=": tenth}}, f"doctrove_primary_date >= '{tenth}'"),
        ("filter passing 1%", {"doctrove_source": "biorxiv"}, "doctrove_source = 'biorxiv'"),
    ]


def percentiles(values):
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


def timed(cur, query, args):
    started = time.perf_counter()
    cur.execute(query, args)
    rows = cur.fetchall()
    return rows, (time.perf_counter() - started) * 1000


def vector_text(vector):
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


EF_SEARCH = (40, 200)


def measure_scale(queries, query_vectors):
    conn = connect()
    cur = conn.cursor()
    cur.execute("LOAD 'vector'")  # so that hnsw.ef_search is pgvector's own setting
    results = {}
    for name, search_filter, where in filters():
        exact_ids, exact_ms, search_ms, recall = [], [], [], []
        cur.execute("SET enable_indexscan = off")  # the exact scan: every candidate's distance
        for vector in query_vectors:
            rows, ms = timed(cur, f"""SELECT doctrove_paper_id::text FROM doctrove_papers WHERE {where}
                                      ORDER BY doctrove_embedding <=> %s::vector LIMIT 10""", (vector_text(vector),))
            exact_ids.append({r[0] for r in rows})
            exact_ms.append(ms)
        cur.execute("RESET enable_indexscan")
        argument = json.dumps(search_filter) if search_filter else None
        row = {"exact_scan": percentiles(exact_ms)}
        for ef in EF_SEARCH:
            cur.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            search_ms, recall = [], []
            for query, truth in zip(queries, exact_ids):
                cur.execute("SELECT count(*) FROM doctrove_embed.search(%s, 10, NULL, %s::jsonb)", (query, argument))
                rows, ms = timed(cur, "SELECT paper_id FROM doctrove_embed.search(%s, 10, NULL, %s::jsonb)",
                                 (query, argument))
                search_ms.append(ms)
                recall.append(len(truth & {r[0] for r in rows}) / 10)
            row[f"ef_search {ef}"] = {**percentiles(search_ms), "recall_at_10": round(statistics.mean(recall), 3),
                                      "min_recall_at_10": min(recall)}
            print(f"  {name}, ef_search {ef}: search p50 {row[f'ef_search {ef}']['p50_ms']} ms, "
                  f"recall@10 {row[f'ef_search {ef}']['recall_at_10']}", flush=True)
        cur.execute("RESET hnsw.ef_search")
        results[name] = row
    conn.close()
    return results


def measure_cache(count):
    """search() with a filter no paper passes, so the query's embedding is nearly all it does:
    a new text (a request to the mock, which answers at once) against the same text again."""
    conn = connect()
    cur = conn.cursor()
    nothing = json.dumps({"doctrove_paper_id": -1})
    misses, hits = [], []
    cur.execute("SELECT query_cache_hits, query_cache_misses FROM doctrove_embed.status")
    before = cur.fetchone()
    for i in range(count):
        text = f"a question asked once, number {i}"
        misses.append(timed(cur, "SELECT * FROM doctrove_embed.search(%s, 10, NULL, %s::jsonb)", (text, nothing))[1])
        hits.append(timed(cur, "SELECT * FROM doctrove_embed.search(%s, 10, NULL, %s::jsonb)", (text, nothing))[1])
    cur.execute("SELECT query_cache_hits, query_cache_misses FROM doctrove_embed.status")
    after = cur.fetchone()
    conn.close()
    return {"miss": percentiles(misses), "hit": percentiles(hits),
            "cache_hits": after[0] - before[0], "cache_misses": after[1] - before[1]}


def measure_api_query(queries):
    """The papers' API query: a text, a similarity threshold, source and date filters, 100 rows."""
    conn = connect()
    cur = conn.cursor()
    cur.execute(f"SELECT {date_after(0.25)}::text")
    since = cur.fetchone()[0]
    sql = """SELECT paper_id, title, similarity
             FROM doctrove_embed.search(%s, 100, 0.35,
                  jsonb_build_object('doctrove_source', 'arxiv', 'doctrove_primary_date', jsonb_build_object('>=', %s::text)))"""
    times, counts = [], []
    for query in queries:
        cur.execute(sql, (query, since))
        rows, ms = timed(cur, sql, (query, since))
        times.append(ms)
        counts.append(len(rows))
    conn.close()
    return {**percentiles(times), "rows_median": statistics.median(counts), "since": since}


def run_scale(args):
    queries = [f"bench question {i} about topic {i}" for i in range(args.queries)]
    mock = subprocess.Popen([f"{bench.ROOT}/target/release/doctrove-mock", "--listen", f"127.0.0.1:{MOCK_PORT}"],
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        if args.reuse:
            bench.lib("cluster_restart", CLUSTER)
            loaded = built = 0
        else:
            start_cluster()
            print(f"search: loading {args.papers:,} papers of {args.dims} dimensions", flush=True)
            started = time.monotonic()
            load_scale(args.papers, args.dims, mock_vectors(queries, args.dims), args.seed)
            loaded = time.monotonic() - started
            print(f"  loaded in {loaded:.0f} s; building the HNSW index", flush=True)
            built = build_hnsw()
            print(f"  built in {built:.0f} s", flush=True)
        scale = measure_scale(queries, mock_vectors(queries, args.dims))
        cache = measure_cache(args.queries)
        api = measure_api_query(queries)
    finally:
        bench.lib("cluster_stop", CLUSTER)
        if not args.keep:
            subprocess.run(["rm", "-rf", CLUSTER], check=False)
        mock.terminate()
    return {"papers": args.papers, "dims": args.dims, "queries": args.queries, "load_s": round(loaded),
            "hnsw_build_s": round(built), "filters": scale, "cache": cache, "api_query": api}


# --- quality on the local model ----------------------------------------------------------

TOPIC_QUERIES = {
    "astro-ph.GA": ["how dark matter shapes the way galaxies rotate", "growth of the black holes at galaxy centres",
                    "lensing measurements of galaxy clusters"],
    "q-bio.BM": ["how a protein folds into its native structure", "enzymes binding their substrate",
                 "structures of proteins in cell membranes"],
    "cs.LG": ["training deep networks to recognise images", "language models built on transformers",
              "agents that learn by trial and error"],
    "econ.GN": ["does a higher minimum wage cost jobs", "interest rates and inflation",
                "tariffs and the prices consumers pay"],
    "cond-mat.mtrl-sci": ["better cathodes for lithium batteries", "efficiency of perovskite solar cells",
                          "alloys that stay strong when hot"],
    "physics.ao-ph": ["the shrinking Arctic sea ice", "stronger tropical storms in a warmer climate",
                      "year to year changes in monsoon rain"],
    "math.NT": ["how prime numbers are distributed", "rational points on elliptic curves",
                "zeros of the zeta function"],
    "q-bio.NC": ["place cells and memory of space", "dopamine and learning from reward",
                 "memories replayed during sleep"],
}

# Queries where an exact term decides what is relevant: identifiers, names, acronyms and a
# formula that the model has no special knowledge of. Each is written into the abstracts of
# NEEDLES papers of its field (one sentence at the end); a paper is relevant when its title or
# abstract contains the term, and the query is the term alone, as such searches are typed.
TERM_QUERIES = [
    ("GW190521", "astro-ph.GA"),
    ("NGC 1052-DF2", "astro-ph.GA"),
    ("BRCA1", "q-bio.BM"),
    ("Cas9", "q-bio.BM"),
    ("ResNet-50", "cs.LG"),
    ("Taylor rule", "econ.GN"),
    ("ZrTe5", "cond-mat.mtrl-sci"),
    ("MoS2", "cond-mat.mtrl-sci"),
    ("ERA5", "physics.ao-ph"),
    ("x^3 + y^3 = z^3", "math.NT"),
    ("Kolmogorov-Smirnov", "q-bio.NC"),
    ("CA3", "q-bio.NC"),
]
NEEDLES = 10


def load_quality(count):
    sample = subprocess.run([f"{bench.ROOT}/target/release/doctrove-sample", "--count", str(count)],
                            capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in sample.splitlines() if line]
    rng = random.Random(11)
    for term, category in TERM_QUERIES:
        field = [r for r in records if r["categories"].split()[0] == category and "NEEDLE" not in r]
        for record in rng.sample(field, NEEDLES):
            record["abstract"] = record["abstract"].rstrip() + f" The analysis draws on {term}."
            record["NEEDLE"] = True
    conn = connect(port=QUALITY_PORT)
    conn.cursor().execute("DROP DATABASE IF EXISTS quality")
    conn.cursor().execute("CREATE DATABASE quality")
    conn.close()
    conn = connect("quality", port=QUALITY_PORT)
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION doctrove_embed CASCADE")
    cur.execute("""CREATE TABLE doctrove_papers (
                       doctrove_paper_id bigint PRIMARY KEY,
                       doctrove_title text,
                       doctrove_abstract text,
                       category text,
                       doctrove_embedding vector(384))""")
    cur.executemany("INSERT INTO doctrove_papers VALUES (%s, %s, %s, %s)",
                    [(i + 1, r["title"], r["abstract"], r["categories"].split()[0]) for i, r in enumerate(records)])
    conn.close()


def quality_session(query_format="{query}"):
    options = (f"-c doctrove_embed.api_base_url=http://127.0.0.1:{MODEL_PORT}/v1 "
               "-c doctrove_embed.model=all-MiniLM-L6-v2 -c doctrove_embed.dimensions=0")
    conn = connect("quality", options, QUALITY_PORT)
    conn.cursor().execute("SELECT set_config('doctrove_embed.query_format', %s, false)", (query_format,))
    return conn


def embed_quality():
    conn = quality_session()
    cur = conn.cursor()
    started = time.monotonic()
    while True:
        cur.execute("SELECT successful_embeddings FROM embed_pending(64)")
        if cur.fetchone()[0] == 0:
            break
    cur.execute("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL")
    left = cur.fetchone()[0]
    cur.execute("SELECT doctrove_embed.create_text_index()")
    conn.close()
    if left:
        raise SystemExit(f"search quality: {left} papers were not embedded")
    return time.monotonic() - started


def ranked(cur, how, query):
    """The top 10 (category, text, similarity) for one way of searching."""
    if how == "vector":
        source = ("doctrove_embed.search(%s, 10, NULL) WITH ORDINALITY "
                  "AS s(paper_id, title, distance, similarity, data, rank)")
    else:
        weights = {"text": "0, 1", "hybrid": "1, 1"}[how]
        source = (f"doctrove_embed.hybrid_search(%s, 10, NULL, {weights}) WITH ORDINALITY "
                  "AS s(paper_id, title, score, vector_rank, text_rank, similarity, rank)")
    cur.execute(f"""SELECT p.category, p.doctrove_title || ' ' || p.doctrove_abstract, s.similarity
                    FROM {source} JOIN doctrove_papers p ON p.doctrove_paper_id::text = s.paper_id
                    ORDER BY s.rank""", (query,))
    return cur.fetchall()


def topic_precision(query_format):
    conn = quality_session(query_format)
    cur = conn.cursor()
    precision, similarity = [], []
    for category, queries in TOPIC_QUERIES.items():
        for query in queries:
            rows = ranked(cur, "vector", query)
            precision.append(sum(r[0] == category for r in rows) / 10)
            similarity.extend(r[2] for r in rows if r[0] == category)
    conn.close()
    return {"precision_at_10": round(statistics.mean(precision), 3),
            "on_topic_similarity": round(statistics.mean(similarity), 3) if similarity else None}


def term_precision(how):
    conn = quality_session()
    cur = conn.cursor()
    precision = []
    for term, _ in TERM_QUERIES:
        rows = ranked(cur, how, term)
        precision.append(sum(term.lower() in r[1].lower() for r in rows) / 10)
    conn.close()
    return round(statistics.mean(precision), 3)


def run_quality(args):
    if args.reuse:
        print("search quality: not measured with --reuse (it needs a cluster of its own)")
        return None
    if not os.path.isdir(MODEL_DIR):
        print(f"search quality: no local model in {MODEL_DIR} (make deps installs it); skipped")
        return None
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "doctrove_import"], cwd=bench.ROOT, check=True)
    server = subprocess.Popen([f"{bench.ROOT}/target/release/doctrove-model", "--model", MODEL_DIR,
                               "--listen", f"127.0.0.1:{MODEL_PORT}"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        start_cluster(QUALITY_CLUSTER, QUALITY_PORT)
        print(f"search quality: embedding {args.quality_papers:,} sample papers with the local model", flush=True)
        load_quality(args.quality_papers)
        took = embed_quality()
        result = {
            "papers": args.quality_papers, "embed_s": round(took),
            "topic_queries": sum(len(q) for q in TOPIC_QUERIES.values()),
            "raw_query": topic_precision("{query}"),
            "query_format": topic_precision("Title: {query}"),
            "term_queries": len(TERM_QUERIES),
            "terms": {how: term_precision(how) for how in ("vector", "text", "hybrid")},
        }
    finally:
        bench.lib("cluster_stop", QUALITY_CLUSTER)
        subprocess.run(["rm", "-rf", QUALITY_CLUSTER], check=False)
        server.terminate()
    return result


def print_tables(scale, quality):
    if scale:
        print(f"\nsearch at {scale['papers']:,} papers, {scale['dims']} dimensions, {scale['queries']} queries, "
              f"k = 10 (HNSW index built in {scale['hnsw_build_s']} s)")
        print("| query | search() p50 / p95 ms | recall@10 | with ef_search 200: p50 / p95 ms | recall@10 "
              "| exact scan p50 / p95 ms |")
        print("|---|---|---|---|---|---|")
        for name, row in scale["filters"].items():
            low, high, exact = row["ef_search 40"], row["ef_search 200"], row["exact_scan"]
            print(f"| {name} | {low['p50_ms']} / {low['p95_ms']} | {low['recall_at_10']} | {high['p50_ms']} / "
                  f"{high['p95_ms']} | {high['recall_at_10']} | {exact['p50_ms']} / {exact['p95_ms']} |")
        api = scale["api_query"]
        print(f"\nthe API's query (k = 100, similarity >= 0.35, source arxiv, date >= {api['since']}): "
              f"{api['rows_median']:.0f} rows, p50 {api['p50_ms']} ms, p95 {api['p95_ms']} ms")
        cache = scale["cache"]
        print(f"\nquery embedding: a new text (the mock, answering at once) p50 {cache['miss']['p50_ms']} ms, "
              f"the same text from the cache p50 {cache['hit']['p50_ms']} ms "
              f"({cache['cache_hits']} hits, {cache['cache_misses']} misses in the status view)")
    if quality:
        print(f"\nsearch quality on the local model, {quality['papers']:,} sample papers")
        print("| topic queries | precision@10 | similarity of on-topic results |\n|---|---|---|")
        for name, key in (("query as typed", "raw_query"), ("query_format 'Title: {query}'", "query_format")):
            print(f"| {name} | {quality[key]['precision_at_10']} | {quality[key]['on_topic_similarity']} |")
        print(f"\n| {quality['term_queries']} exact-term queries | precision@10 |\n|---|---|")
        for how, label in (("vector", "search() (vectors only)"), ("text", "text ranking only"),
                           ("hybrid", "hybrid_search()")):
            print(f"| {label} | {quality['terms'][how]} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quality-papers", type=int, default=2000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the 1M-paper cluster for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure on the cluster a --keep run left")
    args = parser.parse_args()
    quality = None if args.skip_quality else run_quality(args)
    scale = None if args.skip_scale else run_scale(args)
    print_tables(scale, quality)
    out = os.path.join(bench.ROOT, "bench", "results", "search.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # A part not measured this time keeps its last figures.
    previous = {}
    if os.path.exists(out):
        with open(out) as f:
            previous = json.load(f)
    with open(out, "w") as f:
        json.dump({"scale": scale or previous.get("scale"), "quality": quality or previous.get("quality")}, f, indent=2)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    sys.exit(main())
