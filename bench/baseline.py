"""The current approach, as the DocTrove service does it: fetch 250 pending papers through the
partial index, one API call asking for base64, one executemany() UPDATE with vector text
literals, commit, repeat. Used by bench.py as the baseline; also runs on its own:

    python3 baseline.py --dsn "host=... dbname=..." --api http://127.0.0.1:18089/v1 --seconds 60
"""
import argparse
import base64
import json
import struct
import time
import urllib.request

import psycopg2


def embed(api, texts):
    body = json.dumps({"model": "text-embedding-3-small", "input": texts, "encoding_format": "base64"}).encode()
    request = urllib.request.Request(api + "/embeddings", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        data = json.loads(response.read())["data"]
    # The service takes results in response order.
    out = []
    for item in data:
        raw = base64.b64decode(item["embedding"])
        out.append(struct.unpack("<%df" % (len(raw) // 4), raw))
    return out


def run(dsn, api, seconds, batch=250):
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    batches = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t0 = time.monotonic()
        cur.execute(
            "SELECT doctrove_paper_id, doctrove_title, doctrove_abstract FROM doctrove_papers "
            "WHERE doctrove_embedding IS NULL AND doctrove_title IS NOT NULL AND doctrove_title <> '' LIMIT %s",
            (batch,),
        )
        rows = cur.fetchall()
        t1 = time.monotonic()
        if not rows:
            break
        texts = []
        for _, title, abstract in rows:
            text = f"Title: {title} Abstract: {abstract}" if abstract and abstract.strip() else f"Title: {title}"
            texts.append(text.strip())
        vectors = embed(api, texts)
        t2 = time.monotonic()
        params = [("[" + ",".join(repr(x) for x in vec) + "]", row[0]) for vec, row in zip(vectors, rows)]
        cur.executemany("UPDATE doctrove_papers SET doctrove_embedding = %s::vector WHERE doctrove_paper_id = %s", params)
        conn.commit()
        t3 = time.monotonic()
        batches.append({"papers": len(rows), "fetch_ms": (t1 - t0) * 1000, "api_ms": (t2 - t1) * 1000, "db_ms": (t3 - t2) * 1000})
    elapsed = time.monotonic() - started
    conn.close()
    return {"papers": sum(b["papers"] for b in batches), "seconds": elapsed, "batches": batches}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    result = run(args.dsn, args.api, args.seconds)
    print(json.dumps({"papers": result["papers"], "seconds": result["seconds"]}))
