"""A BMC Office subscription export that fits the demo customers (`manage.py demo-data`), so the import's
preview → apply → undo can be tried end to end. `samples/abonnementer-demo.xlsx` is this file, shipped.

Most rows match a demo customer (by e-conomic number, else CVR, else name); one names a customer the Hub
does not have (unmatched) and one has an end date before its start date (rejected), so the preview shows
both kinds of problem too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from openpyxl import Workbook

from lib.sandbox import dataset

HEADER = ("Kundenr", "Kunde", "CVR", "Abonnement ID", "Produkt", "Varenr", "Antal", "Enhedspris", "Interval",
          "Startdato", "Slutdato", "Status", "Bemærkning")
PRODUCTS = (
    ("Microsoft 365 Business Standard", "M365-BS", 89.5, "Måned"),
    ("Backup 100 GB", "BCK-100", 149, "Måned"),
    ("Firewall managed", "FW-M", 1250, "Kvartal"),
    ("Domæne .dk", "DOM-DK", 120, "År"),
    ("Hosted telefoni", "TEL-H", 65, "Måned"),
)
SAMPLE_PATH = Path(__file__).resolve().parents[2] / "samples" / "abonnementer-demo.xlsx"


def demo_export_rows() -> list[tuple]:
    """The export's data rows: two subscriptions per demo customer, one unmatched row, one rejected row."""
    rows, number = [], 7001
    for i, customer in enumerate(dataset.hub_customers()):
        for j in range(2):
            product, sku, price, interval = PRODUCTS[(i + j) % len(PRODUCTS)]
            rows.append((customer["economic_customer_number"], customer["name"], customer["cvr_number"],
                         f"D-{number}", product, sku, 1 + (i * 3 + j) % 10, price, interval,
                         datetime(2024 + j, 1 + i % 12, 1), None, "Aktiv", None))
            number += 1
    rows.append((None, "Hjørnet Café", None, f"D-{number}", "Hosted telefoni", "TEL-H", 4, 65, "Måned",
                 datetime(2025, 2, 1), None, "Aktiv", "not a Hub customer: reported as unmatched"))
    first = dataset.hub_customers()[0]
    rows.append((first["economic_customer_number"], first["name"], first["cvr_number"], f"D-{number + 1}",
                 "Backup 100 GB", "BCK-100", 1, 149, "Måned", datetime(2025, 6, 1), datetime(2025, 1, 1), "Aktiv",
                 "end date before start date: rejected"))
    return rows


def write_demo_export(path: Path | str = SAMPLE_PATH) -> Path:
    """Write the demo export as .xlsx (sheet 'Abonnementer', a title row above the header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    sheet = book.active
    sheet.title = "Abonnementer"
    sheet.append(["BMC Office – abonnementer (demo)"])
    sheet.append([])
    sheet.append(list(HEADER))
    for row in demo_export_rows():
        sheet.append(list(row))
    book.properties.created = book.properties.modified = datetime(2026, 11, 1)  # the same bytes every time
    book.save(path)
    return path


if __name__ == "__main__":
    print(write_demo_export())
