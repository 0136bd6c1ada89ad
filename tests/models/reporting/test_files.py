import json
from pathlib import Path

from models.reporting.files import report_paths, write_report


def test_writes_markdown_json_and_figure_side_by_side(tmp_path: Path) -> None:
    drawn: list[Path] = []

    def plot(png: Path) -> None:
        drawn.append(png)
        png.write_bytes(b"png")

    out = tmp_path / "nested" / "pipeline-tiny"
    paths = write_report(out, {"b": 1, "a": [0.5]}, "# title\n", plot, sort_keys=True)
    assert paths == report_paths(out)
    assert paths["md"].read_text() == "# title\n"
    assert json.loads(paths["json"].read_text()) == {"b": 1, "a": [0.5]}
    assert paths["json"].read_text().index('"a"') < paths["json"].read_text().index('"b"')  # sorted keys
    assert drawn == [tmp_path / "nested" / "pipeline-tiny.png"] and paths["png"].read_bytes() == b"png"


def test_key_order_is_kept_unless_sorting_is_asked_for(tmp_path: Path) -> None:
    paths = write_report(tmp_path / "r", {"z": 1, "a": 2}, "", lambda png: None, indent=1)
    text = paths["json"].read_text()
    assert text.index('"z"') < text.index('"a"') and '\n "z": 1' in text


def test_a_dot_in_the_name_stays_and_a_report_suffix_is_dropped(tmp_path: Path) -> None:
    assert report_paths(tmp_path / "retrieval_tau0.1")["json"] == tmp_path / "retrieval_tau0.1.json"
    assert report_paths(tmp_path / "retrieval.md")["png"] == tmp_path / "retrieval.png"
