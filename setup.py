"""RiskWatch: a streaming data pipeline for risk early warning in social-governance centres.

setup.py (not only pyproject) so that Beam's ``--setup_file`` can ship the code to workers.
"""
from setuptools import find_packages, setup

setup(
    name="riskwatch",
    version="0.1.0",
    description="Streaming risk early-warning pipeline for county social-governance centres",
    python_requires=">=3.11",
    packages=find_packages(include=["pipelines*", "models*", "schemas*", "jobs*", "simulator*", "quality*", "reports*"]),
    include_package_data=True,
    package_data={
        "schemas": ["*.yaml", "feeds/*.yaml", "*.csv"],
        "models": ["corpus/*", "corpus/signals/*", "artifacts/*"],
        "simulator": ["data/*"],
        "quality": ["*.yaml", "static/**/*"],
        "reports": ["templates/*", "static/*"],
    },
    install_requires=[
        "apache-beam[dataframe]>=2.77",
        "pandas>=2.2,<3",  # pandas 3 breaks Beam's DataFrame API
        "numpy>=1.26",
        "scikit-learn>=1.5",
        "scipy>=1.11",
        "great-expectations>=1.0",
        "pyarrow>=14",
        "openpyxl>=3.1",
        "xlsxwriter>=3.1",
        "python-calamine>=0.2",
        "opencc>=1.1",
        "jieba>=0.42",
        "pyyaml>=6",
        "jinja2>=3.1",
        "joblib>=1.3",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "websockets>=13", "dask[distributed]>=2024.1"],  # tests/test_dask_runner.py starts a real cluster
        "dask": ["dask[distributed]>=2024.1"],
    },
    entry_points={"console_scripts": ["riskwatch=jobs.cli:main"]},
)
