"""The monthly report: self-contained HTML, XLSX workbook and topics.json under ``reports/YYYY-MM/``.

Entry point: ``reports.render.write_report``.
"""
