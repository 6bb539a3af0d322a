"""The public summary of the content used for training (AI Act Art. 53(1)(d); the Commission's template, July 2025).

Drafted from the lineage DB: each data set's size, digests and fingerprint, the train/evaluation overlap
check and the personal-data treatment — as counts by entity type and action, never a matched value (the DB
holds none). Where the data came from, what period it covers and under which terms are facts only the
provider knows: the run config's ``documentation.datasets`` gives them, or the summary lists them as "to be
completed". A public document names files by their base name only, never a path on a build machine.
"""

from __future__ import annotations

from govern.documents.gpai_form import documentation_of, trained_model_artifact
from govern.documents.model import TO_BE_COMPLETED, Document, FieldBuilder
from govern.report.data import ReportData

BASIS = ("Template for the public summary of training content for general-purpose AI models, AI Act "
         "Art. 53(1)(d) (European Commission, July 2025)")

_SOURCE_TYPES = {"public": "publicly available data sets", "licensed": "private data licensed from third parties",
                 "scraped": "data crawled or scraped online", "user": "user data", "synthetic": "synthetic data",
                 "other": "other sources"}


def build_training_summary(data: ReportData) -> Document:
    doc = documentation_of(data)
    t = data.training
    model = trained_model_artifact(data)
    sections = []

    general = FieldBuilder("1. General information")
    general.config("provider.name", "Provider", doc.provider)
    general.db("model.name", "Model", data.run.name)
    general.db("model.digest", "Model digest (sha256)", model[1] if model else None)
    general.db("model.base", "Base model", (t.base_model.get("name") if t is not None else None)
               or data.reproducibility.base_model.get("name"))
    general.db("data.modalities", "Modality of the training data", "text" if data.data is not None else None)
    if data.data is not None:
        general.db("data.size", "Size of the training data",
                   f"{data.data.train_rows:,} records"
                   + (f", {t.tokens_processed:,} tokens processed in training" if t and t.tokens_processed else ""))
    else:
        general.db("data.size", "Size of the training data", None)
    sections.append(general.section)

    sources = FieldBuilder("2. List of data sources")
    rows: list[list[str]] = []
    if data.data is not None:
        for f in data.data.files:
            info = doc.datasets.get(f.role)
            period = None
            if info and (info.collected_from or info.collected_to):
                period = f"{info.collected_from or '…'} to {info.collected_to or '…'}"
            rows.append([f.role, f.path.rsplit("/", 1)[-1],
                         _SOURCE_TYPES.get(info.source_type, TO_BE_COMPLETED) if info and info.source_type
                         else TO_BE_COMPLETED,
                         info.description if info and info.description else TO_BE_COMPLETED,
                         f"{f.rows:,}", f"{f.size_bytes:,}", period or TO_BE_COMPLETED,
                         info.licence if info and info.licence else TO_BE_COMPLETED, f.fingerprint])
            for key, label, value in (("source_type", "source type", info.source_type if info else None),
                                      ("description", "description", info.description if info else None)):
                sources.config(f"data.{f.role}.{key}", f"{f.role} data set: {label}", value)
    sources.table("data.sources", "Data sets", ["role", "file", "source type", "description", "records", "bytes",
                                               "period covered", "licence", "fingerprint"], rows)
    sections.append(sources.section)

    processing = FieldBuilder("3. Data processing")
    if data.data is not None:
        leak = data.data.leakage
        processing.db("processing.dedup", "Duplicate and overlap check",
                      f"{leak.exact_duplicates} exact and {leak.near_duplicates} near duplicates (MinHash Jaccard "
                      f"≥ {leak.threshold}) of evaluation records found in the training data")
    ps = data.pii_summary
    if ps.scanned:
        processing.db("processing.pii", "Personal data",
                      f"every record scanned with {ps.engine}" if not ps.sampled else f"a sample scanned with {ps.engine}")
        processing.db("processing.pii_redaction", "Personal data removed before training",
                      f"yes ({ps.redaction_mode})" if ps.redacted else "no")
        by: dict[tuple[str, str], int] = {}
        for r in ps.rows:
            by[(r.entity_type, r.action)] = by.get((r.entity_type, r.action), 0) + r.findings
        processing.table("processing.pii_counts", "Personal data found, by entity type (counts only)",
                         ["entity type", "action", "findings"],
                         [[e, a, f"{n:,}"] for (e, a), n in sorted(by.items())])
    else:
        processing.db("processing.pii", "Personal data", None)
    processing.config("processing.rights_reservations", "Respect of text-and-data-mining reservations",
                      doc.copyright_measures)
    processing.note("Copyright measures (e.g. honouring machine-readable opt-outs) are outside what govern records.")
    sections.append(processing.section)
    return Document(kind="training-summary", title=f"Public summary of training content — {data.run.name}",
                    basis=BASIS, run_id=data.run.id, run_name=data.run.name, generated_at=data.generated_at,
                    generator=data.generator, db=data.db, sections=sections)
