from tools.bench.profile_serve import markdown, summarise

RAW = "\n".join(
    [
        "thread (11): MainThread;run (uvicorn/server.py:86);post_recommend (app/api/routes_recommend.py:55);"
        "CandidateGenerator.generate (models/candidates/generator.py:58);search (faiss.py:1) 6",
        "thread (11): MainThread;run (uvicorn/server.py:86);post_recommend (app/api/routes_recommend.py:55);"
        "request_features (models/ranker/gbdt_serving.py:27) 3",
        "thread (12): tandem-cpu_0;_worker (thread.py:83);compute_vectors (app/services/worker.py:71) 1",
        "garbage line",
    ]
)


def test_summarise_counts_each_stage_on_the_stack_and_each_thread() -> None:
    summary = summarise(RAW)
    assert summary["samples"] == 10
    stages = summary["stages"]
    assert stages["recommend (all of it)"] == 0.9
    assert stages["candidates: sources + merge"] == 0.6
    assert stages["features (GBDT)"] == 0.3
    assert stages["near-line worker recompute"] == 0.1
    assert "trees (GBDT)" not in stages
    assert summary["threads"] == {"MainThread": 0.9, "tandem-cpu_0": 0.1}
    assert next(iter(summary["own_time"])) == "search (faiss.py:1)"
    meta = {"command": "c", "machine": "m", "load_average_start": 0.1, "users": 32, "seconds": 30}
    text = markdown(summary, meta | {"rate": 100, "achieved_rps": 150.0, "svg": "x.svg"})
    assert "| candidates: sources + merge | 60.0% |" in text and "150.0 req/s" in text
