"""MkDocs hooks: pages and figures generated at build time from committed results.

* ``benchmarks.md``: every ``benchmarks/results/<name>.md``, each under one heading, its plot
  first (``<name>.png`` when the benchmark draws one; otherwise, for the benchmarks in
  ``PLOTTERS``, a plot drawn here from ``<name>.json``), then its tables, then where and when
  it was measured. A new result file appears without editing the page.
* ``examples.md``: the gallery, one section per ``examples/*.py`` with the figures, run time
  and printed output recorded by ``make gallery`` (``docs/gen_gallery.py``) in
  ``docs/gallery/``. The examples are not run by the docs build.
* ``assets/landing.svg``: gradient error against time per call, from
  ``benchmarks/results/layers.json`` (the landing page's figure).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples"
GALLERY = ROOT / "docs" / "gallery"
log = logging.getLogger("mkdocs.hooks.cvximplicit")

# Benchmarks in reading order; any other result file follows, alphabetically.
BENCHMARK_ORDER = ["layers", "jax_layers", "batch_scaling", "warm_start", "implicit", "core"]
BENCHMARK_ORDER += ["lasso_tuning"]
# Examples in reading order; any other example follows, alphabetically.
EXAMPLE_ORDER = ["quickstart", "torch_layer", "jax_layer", "deq_digits", "lasso_tuning"]
EXAMPLE_ORDER += ["bilevel_lasso_layer"]


def ordered(paths: list[Path], order: list[str]) -> list[Path]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(order)), p.stem))


def figure(alt: str, src: str) -> str:
    """An image that opens at full size when clicked (small on a phone otherwise)."""
    return f"[![{alt}]({src})]({src})"


def commit_date(path: Path) -> str | None:
    """Date of the last commit that touched ``path`` (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# --- benchmarks page -----------------------------------------------------------------------


def benchmark_section(md: Path, page: Page, drawn: set[str] | frozenset[str] = frozenset()) -> str:
    lines = md.read_text().strip().splitlines()
    title = md.stem.replace("_", " ")
    if lines and lines[0].startswith("# "):
        title, lines = lines[0][2:].strip(), lines[1:]
    body = "\n".join("#" + line if line.startswith("## ") else line for line in lines).strip()
    out = [f"## {title} {{#{md.stem.replace('_', '-')}}}", ""]
    png = md.with_suffix(".png")
    up = "../" * page.file.src_uri.count("/")
    if png.exists():
        out += [figure(title, f"{up}assets/results/{png.name}"), ""]
    elif md.stem in drawn:
        out += [figure(title, f"{up}assets/results/{md.stem}.svg"), ""]
        out += [f"*Drawn by the docs build from `benchmarks/results/{md.stem}.json`.*", ""]
    out += [body, ""]
    source = f"benchmarks/{md.stem}.py"
    where = [f"Produced by `python {source}`" if (ROOT / source).exists() else "Recorded"]
    data = md.with_suffix(".json")
    if data.exists():
        record = json.loads(data.read_text())
        machine = record.get("machine") if isinstance(record, dict) else None
        if machine:
            where.append(f"on {machine}")
    date = commit_date(md)
    if date:
        where.append(f"(results committed {date})")
    files = ", ".join(f"`{p.relative_to(ROOT)}`" for p in (md, data, png) if p.exists())
    out += [" ".join(where) + f". Files: {files}.", ""]
    return "\n".join(out)


def benchmarks_markdown(page: Page) -> str:
    results = ordered(list(RESULTS.glob("*.md")), BENCHMARK_ORDER)
    return "\n".join(benchmark_section(md, page, DRAWN) for md in results)


# Benchmarks that record data (.json) but draw no picture get one drawn here, from that data.


def _svg(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "cvximplicit", "font.size": 9})
    return plt


def plot_core(data: dict[str, Any]) -> bytes:
    """Forward time of the default configuration over the limit, split by where it goes."""
    plt = _pyplot()
    rows = [r for r in data["rows"] if r.get("limit_ms")]
    parts = ["setup", "solve", "polish", "factorization", "other"]
    fig, ax = plt.subplots(figsize=(7.2, 0.32 * len(rows) + 1.4), layout="constrained")
    left = [0.0] * len(rows)
    labels = [r["family"] for r in rows]
    for part in parts:
        width = [r[f"{part}_ms"] / r["limit_ms"] for r in rows]
        ax.barh(labels, width, left=left, label=part)
        left = [a + b for a, b in zip(left, width, strict=True)]
    ax.axvline(1.0, color="black", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("our forward time / Clarabel alone on the same data (1 = the limit)")
    fig.legend(ncol=5, loc="outside lower center", frameon=False)
    return _svg(fig)


WARM_START_SERIES = [  # the columns of warm_start.json drawn, where present
    ("warm_ms", "cvximplicit, warm start"),
    ("cold_ms", "cvximplicit, cold"),
    ("cvxpylayers_ms", "cvxpylayers"),
    ("moreau_cold_ms", "cvxpylayers (Moreau CPU), cold"),
    ("moreau_warm_ms", "cvxpylayers (Moreau CPU), warm"),
]


def plot_warm_start(data: dict[str, Any]) -> bytes:
    """Time per training step: warm starts, cold solves and cvxpylayers."""
    plt = _pyplot()
    rows = [r for r in data["rows"] if "failed" not in r]
    steps = sorted({r["lr_rel"] for r in rows})
    fig, axes = plt.subplots(1, len(steps), figsize=(7.2, 4.2), layout="constrained", sharey=True)
    for ax, step in zip(list(getattr(axes, "flat", [axes])), steps, strict=True):
        sel = [r for r in rows if r["lr_rel"] == step]
        x = range(len(sel))
        present = [(k, label) for k, label in WARM_START_SERIES if any(r.get(k) for r in rows)]
        width = 0.8 / len(present)
        for k, (key, label) in enumerate(present):
            offset = (k - (len(present) - 1) / 2) * width
            heights = [r.get(key) or float("nan") for r in sel]  # None: that run failed
            ax.bar([i + offset for i in x], heights, width, label=label)
        names = [f"{r['family']}, batch {r['batch']}" for r in sel]
        ax.set_xticks(list(x), names, fontsize=7.5, rotation=40, ha="right")
        ax.set_yscale("log")
        ax.set_title(f"relative step {step:g}")
    axes.flat[0].set_ylabel("ms per Adam step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=3, loc="outside lower center", frameon=False)
    return _svg(fig)


PLOTTERS = {"core": plot_core, "warm_start": plot_warm_start}
DRAWN: set[str] = set()  # the plots drawn by this build (on_files), shown by on_page_markdown


def drawn_plots() -> dict[str, bytes]:
    """``{name: svg}`` for the results with data and a plotter but no picture of their own."""
    out = {}
    for name, plot in PLOTTERS.items():
        data = RESULTS / f"{name}.json"
        if data.exists() and not data.with_suffix(".png").exists():
            try:
                out[name] = plot(json.loads(data.read_text()))
            except Exception as exc:  # a changed data format: say so (fails a strict build)
                log.warning(f"could not draw {data.name} ({exc!r}): update docs/hooks.py")
    return out


# --- examples gallery ----------------------------------------------------------------------


def rst_to_md(text: str) -> str:
    """The examples' docstrings use reST literals (````x````); Markdown wants ```x```."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else "" for line in text.splitlines())


def gallery_section(example: Path) -> str:
    name = example.stem
    source = example.read_text()
    doc = ast.get_docstring(ast.parse(source)) or name
    title, _, description = doc.partition("\n")
    out = [f"## {rst_to_md(title.strip().rstrip('.'))} {{#{name.replace('_', '-')}}}", ""]
    out += [rst_to_md(description.strip()), ""]
    record_path = GALLERY / f"{name}.json"
    if not record_path.exists():
        log.warning(f"examples/{example.name} has no gallery record: run `make gallery`")
        out += ["*Not run yet for the gallery (`make gallery`).*", ""]
        return "\n".join(out)
    record: dict[str, Any] = json.loads(record_path.read_text())
    for fig in record["figures"]:
        out += [figure(f"{example.name}: {fig}", f"gallery/{name}/{fig}"), ""]
    shared = ""
    if record.get("load_average", 0) > record.get("cpu_count", 1) / 2:
        shared = f"; other work was running (load average {record['load_average']} at the start)"
    out += [
        f"**Run time {record['seconds']:.0f} s** (`python examples/{example.name}`, whole script;"
        f" {record['machine']}; {record['date']}{shared}).",
        "",
    ]
    if record["source_sha256"] != hashlib.sha256(source.encode()).hexdigest()[:16]:
        out += [
            '!!! note "Recorded with an earlier version of this example"',
            "    The example changed since this run; `make gallery` records it again.",
            "",
        ]
    label = "Printed output (end)" if record.get("output_truncated") else "Printed output"
    fold = "???+" if not record["figures"] else "???"  # no figure: the output is open
    out += [f'{fold} note "{label}"', "", indent("```text\n" + record["output"] + "\n```"), ""]
    out += [f'??? example "Source: examples/{example.name}"', ""]
    out += [indent("```python\n" + source.rstrip() + "\n```"), ""]
    return "\n".join(out)


def gallery_markdown() -> str:
    examples = ordered(list(EXAMPLES.glob("*.py")), EXAMPLE_ORDER)
    return "\n".join(gallery_section(p) for p in examples)


# --- landing-page figure -------------------------------------------------------------------

CONFIG_STYLE = {  # label, colour, marker
    "cvximplicit": ("cvximplicit (Clarabel)", "#1f77b4", "o"),
    "cvximplicit (Moreau)": ("cvximplicit (Moreau)", "#17becf", "D"),
    "cvxpylayers (defaults)": ("cvxpylayers, defaults", "#d62728", "s"),
    "cvxpylayers (Moreau CPU)": ("cvxpylayers, Moreau CPU", "#ff7f0e", "^"),
    "cvxpylayers (SCS 1e-10, dense)": ("cvxpylayers, SCS 1e-10 (dense)", "#7f7f7f", "v"),
}


def landing_figure() -> bytes:
    plt = _pyplot()
    data = json.loads((RESULTS / "layers.json").read_text())
    rows = [r for r in data["rows"] if r["batch"] == 1 and r.get("grad_rel_error") is not None]
    families = sorted({r["family"] for r in rows})
    fig, ax = plt.subplots(figsize=(7.2, 4.8), layout="constrained")
    for config, (label, colour, marker) in CONFIG_STYLE.items():
        pts = [r for r in rows if r["config"] == config]
        if not pts:
            continue
        ours = config.startswith("cvximplicit")
        ax.scatter(
            [r["forward_backward_ms"] for r in pts],
            [r["grad_rel_error"] for r in pts],
            label=label,
            c=colour if ours else "none",
            edgecolors=colour,
            marker=marker,
            s=46,
            linewidths=1.4,
            zorder=3 if ours else 2,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forward + backward time per call (ms, batch 1)")
    ax.set_ylabel("relative gradient error")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(
        f"PyTorch layers on {len(families)} problem families: lower left is better",
        fontsize=10,
    )
    fig.legend(fontsize=8.5, loc="outside lower center", ncol=3, frameon=False)
    return _svg(fig)


def landing_markdown() -> str:
    """The landing figure and its caption, the caption's numbers from the same data."""
    data = json.loads((RESULTS / "layers.json").read_text())
    rows = [r for r in data["rows"] if r["batch"] == 1 and r.get("grad_rel_error") is not None]

    def span(configs: tuple[str, ...]) -> str:
        errors = [r["grad_rel_error"] for r in rows if r["config"] in configs]
        return f"{min(errors):.0e} to {max(errors):.0e}"

    families = len({r["family"] for r in rows})
    time = {(r["family"], r["config"]): r["forward_backward_ms"] for r in rows}
    pairs = [
        f for (f, c) in time if c == "cvxpylayers (SCS 1e-10, dense)" and (f, "cvximplicit") in time
    ]
    slower = sum(time[f, "cvxpylayers (SCS 1e-10, dense)"] > time[f, "cvximplicit"] for f in pairs)
    return (
        "![Relative gradient error against forward + backward time per call, batch 1: "
        "cvximplicit and cvxpylayers on the benchmark families](assets/landing.svg)\n\n"
        f"*Each point is one layer on one of {families} problem families: time for a forward "
        "pass and `backward()` at batch 1, and the relative error of the gradient along a random "
        "direction against central differences of tight re-solves. cvximplicit's errors: "
        f"{span(('cvximplicit', 'cvximplicit (Moreau)'))}; cvxpylayers with its defaults: "
        f"{span(('cvxpylayers (defaults)',))}, with Moreau CPU: "
        f"{span(('cvxpylayers (Moreau CPU)',))};"
        f" with SCS at 1e-10 (dense): {span(('cvxpylayers (SCS 1e-10, dense)',))}, slower than "
        f"cvximplicit (Clarabel) on {slower} of {len(pairs)} families. From "
        "`benchmarks/results/layers.json` ([benchmarks](benchmarks.md#layers)).*"
    )


# --- hooks ---------------------------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"assets/results/{png.name}", abs_src_path=str(png)))
    files.append(File.generated(config, "assets/landing.svg", content=landing_figure()))
    DRAWN.clear()
    for name, svg in drawn_plots().items():
        files.append(File.generated(config, f"assets/results/{name}.svg", content=svg))
        DRAWN.add(name)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    # <!-- benchmark: NAME --> on any page: that benchmark's section, as on the benchmarks page.
    markdown = re.sub(
        r"<!-- benchmark: (\w+) -->",
        lambda m: benchmark_section(RESULTS / f"{m.group(1)}.md", page, DRAWN),
        markdown,
    )
    if page.file.src_uri == "benchmarks.md":
        return markdown.replace("<!-- benchmark results -->", benchmarks_markdown(page))
    if page.file.src_uri == "index.md":
        return markdown.replace("<!-- landing figure -->", landing_markdown())
    if page.file.src_uri == "examples.md":
        return markdown.replace("<!-- gallery -->", gallery_markdown())
    return markdown
