"""The local model server's throughput, side by side with sentence-transformers on PyTorch.

Started by `make bench` after the extension's runs (bench/run.sh). Three sets of texts in the
extension's `Title: .. Abstract: ..` form, built from a generated sample (doctrove-sample):
titles only, short (a title and about 60 words, about 100 tokens) and abstract-length (a title
and 150 to 250 words, about 250 tokens). For each set:
  - the server (`doctrove-model`, its defaults) through POST /v1/embeddings, requests of 64
    inputs, with 1, 2 and 4 clients at once;
  - sentence-transformers on PyTorch, in-process, all cores, batches of 64, the same model folder,
    in a throwaway virtualenv (bench/reference_st.py; installed from PyPI on first use into
    $ST_VENV); if it cannot be installed, the server's figures are printed alone.
Then the matrix kernels side by side, on the short texts, each checked against the default's
vectors: the default (the packed kernel for products of few rows, OpenBLAS for many), the
packed kernel alone, OpenBLAS with its core type chosen from the CPU's features, and OpenBLAS's SSE3 fallback (`OPENBLAS_CORETYPE=PRESCOTT`, what Debian 12's OpenBLAS
runs on CPUs newer than its table); each with its texts/s and one short query's p50 and p90 over
a kept-alive connection, and the kernel and instruction set its /health names.
Then the server again with `--precision bf16` (AMX tiles where Linux grants them, AVX-512 BF16
otherwise) and `--precision int8` (AVX-512 VNNI, AVX-VNNI, or AVX2 on words), each skipped
where the CPU lacks it, one client, with its lowest cosine to the f32
server's vectors and to sentence-transformers'. `--precisions-only`: the f32 server with one
client, then the two precisions, nothing else.
Prints texts and tokens per second, the ratio, and the lowest cosine between the two models'
vectors; writes bench/results/model.json. Standard library only.
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import random
import struct
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.environ.get("DOCTROVE_MODEL_DIR", "/opt/doctrove_embed/all-MiniLM-L6-v2")
ST_VENV = os.environ.get("ST_VENV", "/opt/doctrove_embed/st-venv")
ST_REQUIREMENTS = ["sentence-transformers"]


def texts_of(kind, sample, count, rng):
    """`count` texts of one kind; abstracts longer than one sample's are joined from several."""
    words = [w for r in sample for w in r["abstract"].split()]
    out = []
    for i in range(count):
        title = sample[i % len(sample)]["title"]
        if kind == "titles only":
            out.append(f"Title: {title}")
            continue
        n = rng.randint(55, 65) if kind == "short" else rng.randint(150, 250)
        start = rng.randrange(0, len(words) - n)
        out.append(f"Title: {title} Abstract: {' '.join(words[start:start + n])}")
    return out


def post(url, texts, model="all-MiniLM-L6-v2"):
    body = json.dumps({"model": model, "input": texts, "encoding_format": "base64"}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.load(answer)


def decode(item):
    raw = base64.b64decode(item["embedding"])
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def server_run(url, texts, clients, per_request, model="all-MiniLM-L6-v2"):
    """Texts/s and tokens/s with `clients` sending requests at once; the vectors in order."""
    chunks = [texts[i:i + per_request] for i in range(0, len(texts), per_request)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda chunk: post(url, chunk, model), chunks))
    seconds = time.monotonic() - started
    tokens = sum(a["usage"]["prompt_tokens"] for a in answers)
    vectors = [decode(item) for a in answers for item in sorted(a["data"], key=lambda d: d["index"])]
    return {"texts_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds),
            "seconds": round(seconds, 2), "tokens": tokens}, vectors


def reference_python():
    """The virtualenv's python with sentence-transformers, installing it on first use; None if
    it cannot be installed here."""
    python = os.path.join(ST_VENV, "bin", "python")
    probe = [python, "-c", "import sentence_transformers, torch"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"local model: installing {' '.join(ST_REQUIREMENTS)} from PyPI into {ST_VENV} (first run only)")
    try:
        subprocess.run([sys.executable, "-m", "venv", ST_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *ST_REQUIREMENTS], check=True)
        subprocess.run(probe, check=True, capture_output=True)
        return python
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"local model: sentence-transformers cannot be installed here ({error}); server figures only")
        return None


def reference_run(python, texts, work, folder=MODEL_DIR, script="reference_st.py", extra=()):
    """`script` (a reference runtime in bench/) over `texts` with the model in `folder`."""
    path = os.path.join(work, "texts.json")
    with open(path, "w") as f:
        json.dump(texts, f)
    out = os.path.join(work, "reference.json")
    subprocess.run([python, f"{ROOT}/bench/{script}", folder, path, out, "--threads", str(os.cpu_count()), *extra],
                   check=True)
    with open(out) as f:
        return json.load(f)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)


def start_server(port, precision, kernel="fastest", env=None, folder=MODEL_DIR):
    """The server; `env`, when given, replaces OPENBLAS_CORETYPE's setting (none: unset)."""
    environment = dict(os.environ)
    if env is not None:
        environment.pop("OPENBLAS_CORETYPE", None)
        environment.update(env)
    return subprocess.Popen([f"{ROOT}/target/release/doctrove-model", "--model", folder, "--precision", precision,
                             "--kernel", kernel, "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True,
                            env=environment)


def query_latency(port, queries=300):
    """p50 and p90 in ms of one short query at a time over one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": "all-MiniLM-L6-v2", "input": "graph neural networks for molecule property prediction",
                       "encoding_format": "base64"})
    times = []
    for i in range(queries + 30):
        started = time.perf_counter()
        connection.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        connection.getresponse().read()
        if i >= 30:
            times.append((time.perf_counter() - started) * 1000)
    connection.close()
    times.sort()
    return round(times[len(times) // 2], 2), round(times[int(len(times) * 0.9)], 2)


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        return json.load(answer)


KERNELS = [
    ("fastest (default)", "fastest", {}),
    ("packed alone", "packed", {}),
    ("openblas, core type from the CPU", "openblas", {}),
    ("openblas, SSE3 fallback", "openblas", {"OPENBLAS_CORETYPE": "PRESCOTT"}),
]


def kernel_runs(port, texts, per_request, results):
    """Each kernel on the same texts: texts/s, one query's latency, lowest cosine to the default's."""
    reference = None
    for label, kernel, env in KERNELS:
        server = start_server(port, "f32", kernel, env)
        if not server.stdout.readline().strip():
            server.wait()
            print(f"local model, kernel {label}: cannot start here; not measured")
            continue
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        try:
            post(url, ["warm up"] * 8)
            found = health(port)
            run, vectors = server_run(url, texts, 1, per_request)
            p50, p90 = query_latency(port)
        finally:
            server.terminate()
            server.wait()
        reference = reference or vectors
        worst = min(cosine(a, b) for a, b in zip(vectors, reference))
        results["kernels"][label] = {"kernel": found["kernel"], "instruction_set": found["instruction_set"],
                                     "texts_per_s": run["texts_per_s"], "query_p50_ms": p50, "query_p90_ms": p90,
                                     "lowest_cosine_to_default": round(worst, 7)}
        print(f"local model, kernel {label:33} [{found['kernel']} on {found['instruction_set']}]: "
              f"{run['texts_per_s']:6.1f} texts/s (short), one query p50 {p50:5.2f} ms, p90 {p90:5.2f} ms, "
              f"lowest cosine {worst:.7f} to the default's vectors")


def precision_runs(precision, port, texts_by_kind, f32_vectors, st, per_request, results):
    """The server with --precision PRECISION, one client: texts/s, against the f32 server and
    sentence-transformers, and the lowest cosine to each one's vectors."""
    server = start_server(port, precision)
    banner = server.stdout.readline().strip()
    if not banner:
        server.wait()
        print(f"local model, {precision}: this CPU lacks its instructions; not measured")
        return
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    try:
        post(url, ["warm up"] * 8)
        for kind, texts in texts_by_kind.items():
            entry = results["sets"][kind]
            run, vectors = server_run(url, texts, 1, per_request)
            f32 = entry["server, 1 clients"]["texts_per_s"]
            worst_f32 = min(cosine(a, b) for a, b in zip(vectors, f32_vectors[kind]))
            entry[f"server {precision}, 1 client"] = run
            entry[f"{precision}_to_f32_speed"] = round(run["texts_per_s"] / f32, 2)
            entry[f"{precision}_lowest_cosine_to_f32"] = round(worst_f32, 6)
            line = (f"local model, {kind:15} {precision}: {run['texts_per_s']:6.1f} texts/s, {run['texts_per_s'] / f32:.2f}x the f32 server, "
                    f"lowest cosine {worst_f32:.6f} to its vectors")
            if kind in st:
                ratio = run["texts_per_s"] / st[kind]["texts_per_s"]
                worst_st = min(cosine(a, b) for a, b in zip(vectors, st[kind]["vectors"]))
                entry[f"{precision}_ratio"], entry[f"{precision}_lowest_cosine"] = round(ratio, 2), round(worst_st, 6)
                line += f"; {ratio:.2f}x sentence-transformers, lowest cosine {worst_st:.6f} to its vectors"
            print(line)
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--per-request", type=int, default=64)
    parser.add_argument("--port", type=int, default=18190)
    parser.add_argument("--kernels-only", action="store_true", help="only the side-by-side of the matrix kernels")
    parser.add_argument("--precisions-only", action="store_true", help="only f32 (one client), bf16 and int8")
    args = parser.parse_args()
    sample = subprocess.run([f"{ROOT}/target/release/doctrove-sample", "--count", "2000", "--seed", "3"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    sample = [json.loads(line) for line in sample]
    rng = random.Random(7)
    work = os.path.join(ROOT, "bench", "results", "tmp")
    os.makedirs(work, exist_ok=True)
    texts_by_kind = {kind: texts_of(kind, sample, args.texts, rng) for kind in ("titles only", "short", "abstract-length")}
    results = {"cores": os.cpu_count(), "sets": {}, "kernels": {}}
    if not args.precisions_only:
        kernel_runs(args.port + 2, texts_by_kind["short"], args.per_request, results)
    if args.kernels_only:
        return
    python = None if args.precisions_only else reference_python()
    server = start_server(args.port, "f32")
    results["banner"] = server.stdout.readline().strip()
    url = f"http://127.0.0.1:{args.port}/v1/embeddings"
    f32_vectors, st = {}, {}
    try:
        post(url, ["warm up"] * 8)
        for kind, texts in texts_by_kind.items():
            entry = {"texts": len(texts)}
            vectors = None
            for clients in (1,) if args.precisions_only else (1, 2, 4):
                entry[f"server, {clients} clients"], got = server_run(url, texts, clients, args.per_request)
                vectors = vectors or got
            f32_vectors[kind] = vectors
            entry["tokens_per_text"] = round(entry["server, 1 clients"]["tokens"] / len(texts), 1)
            counts = [c for c in (1, 2, 4) if f"server, {c} clients" in entry]
            line = (f"local model, {kind:15} ({entry['tokens_per_text']:5.1f} tokens/text): server "
                    + ", ".join(f"{entry[f'server, {c} clients']['texts_per_s']:6.1f}" for c in counts)
                    + f" texts/s ({', '.join(map(str, counts))} clients)")
            if python:
                reference = reference_run(python, texts, work)
                st[kind] = reference
                entry["sentence-transformers"] = {k: reference[k] for k in ("texts_per_s", "tokens_per_s", "seconds", "versions")}
                ratio = entry["server, 1 clients"]["texts_per_s"] / reference["texts_per_s"]
                worst = min(cosine(a, b) for a, b in zip(vectors, reference["vectors"]))
                entry["ratio"], entry["lowest_cosine"] = round(ratio, 2), round(worst, 7)
                line += (f"; sentence-transformers {reference['texts_per_s']:6.1f} texts/s; "
                         f"ratio {ratio:.2f}x; lowest cosine {worst:.7f}")
            print(line)
            results["sets"][kind] = entry
    finally:
        server.terminate()
        server.wait()
    for offset, precision in enumerate(("bf16", "int8"), start=1):
        precision_runs(precision, args.port + offset + 2, texts_by_kind, f32_vectors, st, args.per_request, results)
    if args.precisions_only:
        return
    with open(f"{ROOT}/bench/results/model.json", "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
