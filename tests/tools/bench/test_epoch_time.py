from tools.bench.epoch_time import best_within, markdown


def run(cpu: list[float], scores: list[float], label: str = "r") -> dict:
    rows, total = [], 0.0
    for epoch, (seconds, score) in enumerate(zip(cpu, scores, strict=True), start=1):
        total += seconds
        rows.append(
            {
                "epoch": epoch,
                "cpu_s": seconds,
                "wall_s": seconds + 1,
                "cumulative_cpu_s": total,
                "val_NDCG@10": score,
            }
        )
    layout = {"max_tokens": 64, "fold_context": True, "max_items_per_session": 1}
    return {"label": label, "layout": layout, "batch_size": 32, "epochs": rows}


def test_best_within_a_budget_counts_only_epochs_that_ended_inside_it():
    slow = run([12.0] * 8, [0.05, 0.09, 0.11, 0.12, 0.13, 0.12, 0.14, 0.13])
    assert best_within(slow, 30) == 0.09  # epochs end at 12, 24, 36 ...
    assert best_within(slow, 90) == 0.14
    assert best_within(slow, 120) is None  # stopped at 96 s although another epoch fitted


def test_markdown_has_one_row_per_run_with_median_epoch_seconds():
    table = markdown([run([10.0, 12.0, 11.0], [0.1, 0.2, 0.25], "after")])
    lines = table.strip().splitlines()
    assert len(lines) == 3  # header, rule, one run; epoch 3 ends past 30 s, no run reaches 60 s
    assert lines[2] == "| after | 64 folded | 32 | 11.00 | 12.00 | 3 | 0.2000 | – | – | – |"
