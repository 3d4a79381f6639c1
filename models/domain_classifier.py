"""Domain classifier: each event into one of the taxonomy's risk domains or ``none``.

Model: a scikit-learn ``Pipeline`` of
  * character 1–3-gram TF-IDF of the text (sublinear tf; ``models.features.NgramTfidf``, which can
    add a jieba-dictionary word block — measured, and left out: it lowered macro-F1),
  * the feed and its category (``source|source_category``, one-hot),
feeding a ``LinearSVC`` calibrated by temperature scaling (``CalibratedClassifierCV``, 5 folds,
``ensemble=False`` so one linear model is kept: a small artifact and one dot product per event).
The texts are normalised inside the model (NFKC, traditional → simplified, masked tokens unified),
so raw hotline text and the ingest pipeline's normalised text get the same prediction.

Priors and fallbacks — when the model's confidence (its calibrated probability of its top
domain) is below ``FALLBACK_BELOW`` (0.5), and only then:
  1. ``rule``: if the normalised text contains keywords (``taxonomy.yaml`` ``keywords``) of exactly
     one domain, and that domain is among the model's two most probable, it is chosen;
  2. ``source``: otherwise, if the feed category fixes a domain (``taxonomy.yaml``
     ``source_categories``) and that domain is among the model's two most probable, it is chosen;
  3. otherwise the model's top domain stands (``domain_by = model``).
The priors only break a near-tie the model itself leaves open; ``domain_confidence`` is always
the model's probability of the domain returned, so a rule- or source-decided event shows how
unsure the model was.

Artifact: ``domain_classifier.joblib`` (the fitted Pipeline) and ``domain_classifier.json``
(model version, scikit-learn version, training-data sha256, taxonomy version, training date,
evaluation metrics). Loading refuses a model trained for another taxonomy version or another
scikit-learn version and says to run ``riskwatch train``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.svm import LinearSVC

import schemas
from models.features import NgramTfidf, normalise_text, normalise_texts, source_key

log = logging.getLogger(__name__)

MODEL_VERSION = "ngram-svm-1"
FALLBACK_BELOW = 0.5
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CORPUS = PACKAGE_DIR / "corpus"
DEFAULT_ARTIFACTS = PACKAGE_DIR / "artifacts"
ARTIFACT_NAME = "domain_classifier"
INDEPENDENT_EVAL = "eval_independent.jsonl"
# Origins whose examples are abundant and machine-composed: a stable share is held out for
# evaluation. Hand-written examples are all used for training (each one is a distinct situation).
HELD_OUT_ORIGINS = ("generated", "simulated")
HELD_OUT_PERCENT = 20
COLUMNS = ["text", "source", "source_category"]


class ArtifactMismatch(RuntimeError):
    """The saved model does not fit this installation: retrain with ``riskwatch train``."""


def build_pipeline(random_state: int = 0) -> Pipeline:
    features = ColumnTransformer(
        [
            # word_range=None: the jieba-dictionary word block lowered cross-validated macro-F1 on the
            # hand-written examples (0.946 against 0.958 without it); see docs/notes/classifier.md
            ("text", NgramTfidf(char_range=(1, 3), word_range=None, min_df=2), ["text"]),
            (
                "source",
                make_pipeline(
                    FunctionTransformer(source_key, feature_names_out="one-to-one"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["source", "source_category"],
            ),
        ],
        sparse_threshold=1.0,
    )
    svm = LinearSVC(C=0.5, class_weight="balanced", random_state=random_state)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=random_state)
    classifier = CalibratedClassifierCV(svm, method="temperature", cv=folds, ensemble=False)
    return Pipeline([("features", features), ("classifier", classifier)])


# ---------------------------------------------------------------- corpus


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """A corpus file: one JSON object per line, Chinese kept readable."""
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} examples → {path}")


def read_jsonl(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def training_files(corpus_dir: Path) -> list[Path]:
    """Every ``*.jsonl`` in the corpus directory except the independent evaluation set."""
    return sorted(p for p in Path(corpus_dir).glob("*.jsonl") if p.name != INDEPENDENT_EVAL)


def load_corpus(corpus_dir: Path) -> pd.DataFrame:
    """Training corpus with an ``origin`` column (file stem) and a stable ``held_out`` flag."""
    frames = []
    for path in training_files(corpus_dir):
        frame = read_jsonl(path)
        frame["origin"] = path.stem
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no training *.jsonl in {corpus_dir}")
    corpus = pd.concat(frames, ignore_index=True)
    unknown = sorted(set(corpus["domain"]) - set(schemas.domain_codes()))
    if unknown:
        raise ValueError(f"corpus labels not in taxonomy {schemas.taxonomy()['version']}: {unknown}")
    bucket = corpus["text"].map(lambda t: zlib.crc32(t.encode("utf-8")) % 100)
    corpus["held_out"] = corpus["origin"].isin(HELD_OUT_ORIGINS) & (bucket < HELD_OUT_PERCENT)
    return corpus


def corpus_sha256(corpus_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in training_files(corpus_dir):
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- priors


@dataclass(frozen=True)
class Priors:
    """The taxonomy's keywords and feed-category mappings, normalised like the model's input."""

    keywords: dict[str, tuple[str, ...]]
    source_domain: dict[tuple[str, str], str]

    @classmethod
    def from_taxonomy(cls, taxonomy: dict) -> "Priors":
        keywords, source_domain = {}, {}
        for domain in taxonomy["domains"]:
            keywords[domain["code"]] = tuple(normalise_text(k) for k in domain.get("keywords") or ())
            for source, categories in (domain.get("source_categories") or {}).items():
                for category in categories:
                    source_domain[(source, category)] = domain["code"]
        return cls(keywords, source_domain)

    def keyword_domains(self, text: str) -> set[str]:
        return {code for code, words in self.keywords.items() if any(w in text for w in words)}


@dataclass
class Prediction:
    domain: str
    confidence: float
    by: str


class FittedFeatures:
    """The fitted ``build_pipeline`` model applied step by step, without its scikit-learn wrappers.

    ``Pipeline.predict_proba`` on a batch of a few hundred events spends most of its time in the
    wrappers (``ColumnTransformer``'s column selection, joblib dispatch, output-format checks, the
    one-hot encoder's input validation: ~6 of 8 ms for 200 events), not in the arithmetic. Here the
    same fitted steps produce the same matrix (the n-gram block from the batch's normalised texts,
    the one-hot block by looking the ``source|category`` key up in the encoder's categories,
    stacked as ``ColumnTransformer`` stacks them) and the same calibrated classifier turns it into
    probabilities: equal floats, tested against ``Pipeline.predict_proba``. The normalised texts
    can be passed in, so a caller that needs them too (the signals) normalises once.

    The calibrated classifier's own ``predict_proba`` checks its input again and stacks the one-hot
    block onto the n-gram block (~0.9 ms of ~2.5 ms for a chunk of 200 events). When it holds one
    linear model with temperature scaling (what ``build_pipeline`` fits), the scores are made here
    as its ``decision_function`` makes them, in the same order of additions: the n-gram block's
    sparse product, then the row's one source column (a one-hot value of 1.0, so its product is
    the weight itself), then the intercepts; its temperature calibrator turns them into
    probabilities, clipped above 1 as ``_CalibratedClassifier.predict_proba`` clips them.
    """

    def __init__(self, pipeline: Pipeline):
        features = pipeline.named_steps.get("features")
        steps = dict((name, (transformer, columns)) for name, transformer, columns in
                     getattr(features, "transformers_", ()))
        text, source = steps.get("text"), steps.get("source")
        if (len(pipeline.steps) != 2 or not isinstance(features, ColumnTransformer) or features.remainder != "drop"
                or len(steps) != 2 or text is None or source is None or text[1] != ["text"]
                or not isinstance(text[0], NgramTfidf) or not isinstance(source[0], Pipeline)
                or [type(s) for _, s in source[0].steps] != [FunctionTransformer, OneHotEncoder]
                or source[0].steps[0][1].func is not source_key or not features.sparse_output_):
            raise ArtifactMismatch("domain classifier artifact is not the pipeline models.domain_classifier builds. "
                                   "Run `riskwatch train`.")
        self.ngrams = text[0]
        encoder = source[0].steps[1][1]
        self.n_sources = len(encoder.categories_[0])
        self.source_column = {key: i for i, key in enumerate(encoder.categories_[0].tolist())}
        self.dtype = encoder.dtype
        self.classifier = pipeline.steps[-1][1]
        self.linear = self._linear_parts(self.classifier, len(self.ngrams.vocabulary_), self.n_sources)

    @staticmethod
    def _linear_parts(classifier, n_ngrams: int, n_sources: int) -> tuple | None:
        """(n-gram weights, source weights, intercepts, calibrator) of a calibrated classifier that is
        one multi-class linear model with temperature scaling; None for any other."""
        calibrated = getattr(classifier, "calibrated_classifiers_", None)
        if not isinstance(classifier, CalibratedClassifierCV) or calibrated is None or len(calibrated) != 1:
            return None
        # read defensively: another scikit-learn may lay its fitted calibrators out otherwise (then the general path)
        model, calibrators = getattr(calibrated[0], "estimator", None), getattr(calibrated[0], "calibrators", ())
        coef = getattr(model, "coef_", None)
        if (getattr(calibrated[0], "method", None) != "temperature" or len(calibrators) != 1
                or not isinstance(model, LinearSVC)
                or len(classifier.classes_) < 3 or coef is None
                or coef.shape != (len(classifier.classes_), n_ngrams + n_sources)):
            return None
        weights = np.ascontiguousarray(coef.T)
        return weights[:n_ngrams], weights[n_ngrams:], model.intercept_, calibrators[0]

    def proba(self, normalised: list[str], source_keys: list[str]) -> np.ndarray:
        """``pipeline.predict_proba(frame)`` from ``normalise_texts`` of the frame's texts (one batch)
        and ``source_key`` of its rows."""
        ngrams = self.ngrams.transform_normalised(normalised)
        columns = [self.source_column.get(key, -1) for key in source_keys]
        known = [i for i, column in enumerate(columns) if column >= 0]
        if self.linear is not None:
            ngram_weights, source_weights, intercepts, calibrator = self.linear
            scores = ngrams @ ngram_weights
            scores[known] += source_weights[[columns[i] for i in known]]
            scores += intercepts
            proba = calibrator.predict(scores)
            proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
            return proba
        sources = sp.csr_matrix(
            (np.ones(len(known), dtype=self.dtype), np.array([columns[i] for i in known], dtype=np.int32),
             np.searchsorted(np.array(known, dtype=np.int64), np.arange(len(columns) + 1))),
            shape=(len(columns), self.n_sources))
        return self.classifier.predict_proba(sp.hstack([ngrams, sources]).tocsr())


@dataclass
class DomainClassifier:
    pipeline: Pipeline
    metadata: dict = field(default_factory=dict)
    fallback_below: float = FALLBACK_BELOW

    def __post_init__(self):
        self.priors = Priors.from_taxonomy(schemas.taxonomy())
        self.classes = list(self.pipeline.classes_)
        self.features = FittedFeatures(self.pipeline)

    def predict_frame(self, frame: pd.DataFrame, normalised: list[str] | None = None) -> list[Prediction]:
        """Predictions for a frame with columns text, source, source_category (``normalised``: its
        texts through ``normalise_texts`` as one batch, when the caller has them already)."""
        if frame.empty:
            return []
        frame = frame.reindex(columns=COLUMNS)
        rows = list(zip(frame["text"], frame["source"], frame["source_category"]))
        return self._predict(rows, source_key(frame)[:, 0].tolist(), normalised)

    def predict_records(self, records: list[dict], normalised: list[str] | None = None) -> list[Prediction]:
        rows = [(r.get("text"), r.get("source"), r.get("source_category")) for r in records]
        if all(v is None or type(v) is str for row in rows for v in row):
            # what source_key makes of text cells, without building a frame for it
            return self._predict(rows, [f"{source or ''}|{category or ''}" for _, source, category in rows], normalised)
        # other cell types (numbers from JSON) take pandas' conversions, as the model saw in training
        return self.predict_frame(pd.DataFrame([dict(zip(COLUMNS, row)) for row in rows], columns=COLUMNS), normalised)

    def _predict(self, rows: list[tuple], source_keys: list[str], normalised: list[str] | None) -> list[Prediction]:
        if not rows:
            return []
        if normalised is None:
            normalised = normalise_texts([text for text, _, _ in rows])
        proba = self.features.proba(normalised, source_keys)
        order = np.argsort(-proba, axis=1)[:, :2]
        confidence = np.round(proba[np.arange(len(proba)), order[:, 0]], 4).tolist()
        out = [Prediction(self.classes[first], c, "model") for first, c in zip(order[:, 0].tolist(), confidence)]
        for i in np.flatnonzero(np.asarray(confidence) < self.fallback_below):
            first, second = order[i]
            plausible = {self.classes[first], self.classes[second]}
            prior = self._prior(*rows[i], plausible)
            if prior:
                domain, by = prior
                out[i] = Prediction(domain, round(float(proba[i, self.classes.index(domain)]), 4), by)
        return out

    def _prior(self, text, source, category, plausible: set[str]) -> tuple[str, str] | None:
        hits = self.priors.keyword_domains(normalise_text(text))
        if len(hits) == 1 and hits <= plausible:
            return hits.pop(), "rule"
        mapped = self.priors.source_domain.get((source, category))
        if mapped in plausible:
            return mapped, "source"
        return None

    # ------------------------------------------------------------ persistence

    def save(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model_path = out_dir / f"{ARTIFACT_NAME}.joblib"
        meta_path = out_dir / f"{ARTIFACT_NAME}.json"
        joblib.dump(self.pipeline, model_path, compress=3)
        meta_path.write_text(json.dumps(self.metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return model_path, meta_path

    @classmethod
    def load(cls, artifact_dir: Path | None = None) -> "DomainClassifier":
        """The classifier saved in ``artifact_dir``, or the bundled one when None."""
        if artifact_dir is None:
            return cls._load_bundled()
        artifact_dir = Path(artifact_dir)
        model_path = artifact_dir / f"{ARTIFACT_NAME}.joblib"
        meta_path = artifact_dir / f"{ARTIFACT_NAME}.json"
        if not model_path.exists() or not meta_path.exists():
            raise ArtifactMismatch(f"no classifier in {artifact_dir}; run `riskwatch train --out {artifact_dir}`")
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        check_compatible(metadata)
        return cls(joblib.load(model_path), metadata)


    @classmethod
    def _load_bundled(cls) -> "DomainClassifier":
        """The bundled model; under another scikit-learn release, which may not unpickle it
        faithfully, the same corpus is retrained once (deterministic, seconds) into a cache."""
        metadata = json.loads((DEFAULT_ARTIFACTS / f"{ARTIFACT_NAME}.json").read_text(encoding="utf-8"))
        if metadata.get("sklearn_version") == sklearn.__version__:
            return cls.load(DEFAULT_ARTIFACTS)
        cache = (Path(os.environ.get("RISKWATCH_CACHE") or Path.home() / ".cache" / "riskwatch")
                 / f"classifier-sklearn{sklearn.__version__}-{metadata['training_data_sha256'][:12]}")
        if (cache / f"{ARTIFACT_NAME}.json").exists():
            return cls.load(cache)
        log.warning("bundled classifier was saved with scikit-learn %s; retraining it for %s into %s",
                    metadata.get("sklearn_version"), sklearn.__version__, cache)
        classifier = train(DEFAULT_CORPUS, trained_on=metadata["trained_on"], random_state=metadata["random_state"])
        classifier.save(cache)
        return classifier


def check_compatible(metadata: dict) -> None:
    taxonomy = schemas.taxonomy()
    problems = []
    if str(metadata.get("taxonomy_version")) != str(taxonomy["version"]):
        problems.append(
            f"trained for taxonomy {metadata.get('taxonomy_version')}, schemas have {taxonomy['version']}"
        )
    if metadata.get("sklearn_version") != sklearn.__version__:
        problems.append(f"saved with scikit-learn {metadata.get('sklearn_version')}, running {sklearn.__version__}")
    if sorted(metadata.get("classes") or []) != sorted(schemas.domain_codes()):
        problems.append("its domains differ from the taxonomy's")
    if problems:
        raise ArtifactMismatch("domain classifier artifact does not fit: " + "; ".join(problems) + ". Run `riskwatch train`.")


# ---------------------------------------------------------------- train / evaluate


def evaluate(classifier: DomainClassifier, frame: pd.DataFrame) -> dict:
    """Per-domain precision, recall, F1, support, macro-F1, accuracy and the confusion matrix."""
    labels = schemas.domain_codes()
    predictions = classifier.predict_frame(frame)
    predicted = [p.domain for p in predictions]
    truth = list(frame["domain"])
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    present = support > 0
    return {
        "n": len(frame),
        "accuracy": round(float(np.mean(np.array(truth) == np.array(predicted))), 4),
        "macro_f1": round(float(f1[present].mean()), 4),
        "per_domain": {
            label: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "domain_by": {k: int(v) for k, v in pd.Series([p.by for p in predictions]).value_counts().sort_index().items()},
        "labels": labels,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }


def evaluation_sets(corpus_dir: Path, corpus: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The independent set and the held-out share of each machine-composed origin."""
    corpus = load_corpus(corpus_dir) if corpus is None else corpus
    sets = {}
    independent = Path(corpus_dir) / INDEPENDENT_EVAL
    if independent.exists():
        sets["independent"] = read_jsonl(independent)
    for origin in HELD_OUT_ORIGINS:
        held = corpus[(corpus["origin"] == origin) & corpus["held_out"]]
        if len(held):
            sets[f"held_out_{origin}"] = held
    return sets


def train(corpus_dir: Path = DEFAULT_CORPUS, trained_on: str = "", random_state: int = 0,
          corpus: pd.DataFrame | None = None, evaluate_sets: bool = True) -> DomainClassifier:
    """Fit on the corpus minus its held-out share; metadata includes the evaluation metrics."""
    corpus = load_corpus(corpus_dir) if corpus is None else corpus
    fit_on = corpus[~corpus["held_out"]]
    pipeline = build_pipeline(random_state).fit(fit_on[COLUMNS].reset_index(drop=True), fit_on["domain"].to_numpy())
    metadata = {
        "model_version": MODEL_VERSION,
        "sklearn_version": sklearn.__version__,
        "taxonomy_version": str(schemas.taxonomy()["version"]),
        "training_data_sha256": corpus_sha256(corpus_dir),
        "training_files": [p.name for p in training_files(corpus_dir)],
        "trained_on": trained_on,
        "random_state": random_state,
        "n_training_examples": int(len(fit_on)),
        "training_examples_by_origin": {k: int(v) for k, v in fit_on["origin"].value_counts().sort_index().items()},
        "classes": list(pipeline.classes_),
        "fallback_below": FALLBACK_BELOW,
    }
    classifier = DomainClassifier(pipeline, metadata)
    if evaluate_sets:
        metadata["evaluation"] = {
            name: evaluate(classifier, frame) for name, frame in evaluation_sets(corpus_dir, corpus).items()
        }
    return classifier
