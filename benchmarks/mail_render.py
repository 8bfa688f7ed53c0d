"""Renders per second of a realistic mail template: better_mail beside node's mjml on the same MJML.

One template, an order receipt (head attributes, an inlined ``<mj-style inline="inline">``, a
logo, a five-line order table built by a Jinja2 loop, totals, a button, a footer), rendered the
way ``better_mail.send()`` renders it: variables validated against their annotations, Jinja2
subject/body/text, MJML compiled to HTML by mjml-python, CSS inlined by css-inline, the plain
text part generated. Every render gets a different order number, so nothing is reused but the
compiled Jinja2 templates.

The comparison is the reference MJML compiler (the ``mjml`` npm package, run by node) on the same
MJML after Jinja2 (each loop expanded, each variable filled): node does only the MJML-to-HTML step
(which includes its own inlining of ``mj-style inline``), so its figure is an upper bound of what
a node renderer achieves per send. Node's package is installed with ``npm install mjml`` into a
temporary folder outside the repository (``--node-dir`` reuses one); without node or npm the
comparison is skipped and the line says so.

Usage: ``python benchmarks/mail_render.py [--seconds 3] [--rounds 3] [--node-dir DIR]``.
The goal is at least 5,000 renders/s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

# Rendering needs no database: a minimal configuration with better_mail installed.
settings.configure(
    INSTALLED_APPS=["better_mail"],
    USE_TZ=True,
    BETTER_MAIL={"AUTODISCOVER": False},
)
django.setup()

from better_mail.templates import MailTemplate, render  # noqa: E402

GOAL = 5_000
NODE_SCRIPT = r"""
const mjml2html = require("mjml");
const source = require("fs").readFileSync(0, "utf8");
const seconds = Number(process.argv[2]);
const rounds = Number(process.argv[3]);
const options = { validationLevel: "skip", keepComments: false };
for (let i = 0; i < 200; i++) mjml2html(source, options);  // warm-up: JIT, caches
let best = 0;
for (let r = 0; r < rounds; r++) {
  const start = process.hrtime.bigint();
  let n = 0, elapsed = 0;
  do {
    for (let i = 0; i < 50; i++) mjml2html(source, options);
    n += 50;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  best = Math.max(best, n / elapsed);
}
process.stdout.write(JSON.stringify({ rate: best, html: mjml2html(source, options).html.length }));
"""


class LineItem(TypedDict):
    name: str
    quantity: int
    price: str


class OrderReceipt(MailTemplate):
    name = "bench_order_receipt"
    subject = "Your order {{ order_number }} is confirmed"
    customer_name: str
    order_number: str
    items: list[LineItem]
    subtotal: str
    shipping: str
    total: str
    order_url: str
    support_email: str = "support@shop.example"
    mjml = """
<mjml>
  <mj-head>
    <mj-title>Order {{ order_number }}</mj-title>
    <mj-preview>Thanks {{ customer_name }}, your order is on its way.</mj-preview>
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#1d232b" />
      <mj-button background-color="#2f6fab" color="#ffffff" border-radius="4px" />
    </mj-attributes>
    <mj-style inline="inline">
      .muted { color: #6b7785; font-size: 13px; }
      .total td { font-weight: bold; border-top: 1px solid #d9dde3; }
      .items th { text-align: left; color: #6b7785; font-weight: normal; }
    </mj-style>
    <mj-style>
      @media (max-width: 480px) { .items td { font-size: 13px !important; } }
    </mj-style>
  </mj-head>
  <mj-body background-color="#f3f5f7">
    <mj-section padding="24px 0 8px">
      <mj-column>
        <mj-image width="120px" src="https://shop.example/logo.png" alt="Shop" />
      </mj-column>
    </mj-section>
    <mj-section background-color="#ffffff" padding="24px">
      <mj-column>
        <mj-text font-size="22px" font-weight="bold">Thank you, {{ customer_name }}!</mj-text>
        <mj-text>We received your order <strong>{{ order_number }}</strong> and are packing it.
          You will get another mail with the tracking link when it ships.</mj-text>
        <mj-table css-class="items">
          <tr><th>Item</th><th>Qty</th><th style="text-align:right">Price</th></tr>
          {% for item in items %}
          <tr><td>{{ item.name }}</td><td>{{ item.quantity }}</td>
              <td style="text-align:right">{{ item.price }}</td></tr>
          {% endfor %}
        </mj-table>
        <mj-table>
          <tr><td>Subtotal</td><td style="text-align:right">{{ subtotal }}</td></tr>
          <tr><td>Shipping</td><td style="text-align:right">{{ shipping }}</td></tr>
          <tr class="total"><td>Total</td><td style="text-align:right">{{ total }}</td></tr>
        </mj-table>
        <mj-button href="{{ order_url }}">View your order</mj-button>
        <mj-divider border-width="1px" border-color="#d9dde3" />
        <mj-text css-class="muted">Questions? Reply to this mail or write to
          <a href="mailto:{{ support_email }}">{{ support_email }}</a>.</mj-text>
      </mj-column>
    </mj-section>
    <mj-section padding="16px 0">
      <mj-column>
        <mj-text align="center" css-class="muted">Shop Example Ltd, 1 Market Street, Springfield.
          <a href="https://shop.example/preferences">Mail preferences</a></mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""
    preview_data = {
        "customer_name": "Ada Lovelace",
        "order_number": "A-10001",
        "items": [
            {"name": "Notebook, dotted A5", "quantity": 2, "price": "€19.80"},
            {"name": "Fountain pen, medium nib", "quantity": 1, "price": "€34.00"},
            {"name": "Ink, blue-black 50 ml", "quantity": 1, "price": "€9.50"},
            {"name": "Pencil case, canvas", "quantity": 1, "price": "€12.00"},
            {"name": "Gift wrapping", "quantity": 1, "price": "€3.00"},
        ],
        "subtotal": "€78.30",
        "shipping": "€4.90",
        "total": "€83.20",
        "order_url": "https://shop.example/orders/A-10001",
    }


def python_rate(seconds: float, rounds: int) -> tuple[float, Any]:
    """Best renders/s over ``rounds`` timed runs of at least ``seconds`` each."""
    data = dict(OrderReceipt.preview_data)
    sample = render(OrderReceipt, data)
    for n in range(200):  # warm-up
        render(OrderReceipt, {**data, "order_number": f"W-{n}"})
    best = 0.0
    counter = 0
    for _ in range(rounds):
        start = time.perf_counter()
        done, elapsed = 0, 0.0
        while elapsed < seconds:
            for _ in range(50):
                counter += 1
                render(OrderReceipt, {**data, "order_number": f"A-{counter}"})
            done += 50
            elapsed = time.perf_counter() - start
        best = max(best, done / elapsed)
    return best, sample


def node_rate(mjml: str, seconds: float, rounds: int, node_dir: str | None) -> dict[str, Any]:
    """Renders/s of node's mjml on ``mjml``, or ``{"skipped": reason}``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        return {"skipped": "node is not installed"}
    folder = Path(node_dir) if node_dir else Path(tempfile.gettempdir()) / "better-mail-bench-mjml"
    if ROOT in folder.resolve().parents:
        return {"skipped": f"--node-dir {folder} is inside the repository; use a folder outside"}
    if not (folder / "node_modules" / "mjml").is_dir():
        if not npm:
            return {"skipped": "npm is not installed (needed once for `npm install mjml`)"}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"private": true}\n')
        install = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "mjml@4"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if install.returncode != 0:
            return {"skipped": f"npm install mjml failed: {install.stderr.strip()[-300:]}"}
    script = folder / "bench.js"
    script.write_text(NODE_SCRIPT)
    version = json.loads((folder / "node_modules" / "mjml" / "package.json").read_text())["version"]
    run = subprocess.run(
        [node, str(script), str(seconds), str(rounds)],
        cwd=folder,
        input=mjml,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NODE_ENV": "production"},
    )
    if run.returncode != 0:
        return {"skipped": f"node failed: {run.stderr.strip()[-300:]}"}
    return {**json.loads(run.stdout), "version": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--node-dir", help="folder with node_modules/mjml (outside the repo)")
    args = parser.parse_args()

    rate, sample = python_rate(args.seconds, args.rounds)
    print(
        f"better_mail: {rate:,.0f} renders/s (validate + Jinja2 + mjml-python + css-inline + "
        f"text; HTML {len(sample.html):,} chars, text {len(sample.text):,} chars)"
    )
    node = node_rate(sample.mjml, args.seconds, args.rounds, args.node_dir)
    if "skipped" in node:
        print(f"node mjml: skipped ({node['skipped']})")
        tail = "node mjml skipped"
    else:
        print(
            f"node mjml {node['version']} ({subprocess.getoutput('node --version')}): "
            f"{node['rate']:,.0f} renders/s (MJML to HTML only, same MJML; HTML "
            f"{node['html']:,} chars)"
        )
        tail = f"node mjml {node['rate']:,.0f}/s, ratio {rate / node['rate']:.1f}x"
    verdict = "meets" if rate >= GOAL else "misses"
    print(f"mail_render: better_mail {rate:,.0f} renders/s ({verdict} the {GOAL:,}/s goal), {tail}")


if __name__ == "__main__":
    main()
