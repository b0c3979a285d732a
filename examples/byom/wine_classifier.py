"""A scikit-learn classifier fitted on a pandas DataFrame (the bundled wine data), saved with joblib.

Writes build/byom/wine.joblib, the held-out rows build/byom/wine_test.csv (header = feature names)
and their classes build/byom/wine_test_target.csv: what `maas import` takes.
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = Path("build/byom")
out.mkdir(parents=True, exist_ok=True)
wine = load_wine(as_frame=True)
X, y = wine.data, wine.target.map(dict(enumerate(wine.target_names)))  # class names, not 0/1/2
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
joblib.dump(model, out / "wine.joblib")
X_test.to_csv(out / "wine_test.csv", index=False)
y_test.to_csv(out / "wine_test_target.csv", index=False)
print(f"wine.joblib: {type(model[-1]).__name__} on {X.shape[1]} features, classes {list(model.classes_)}")
