"""An XGBoost classifier (its scikit-learn API) on the bundled wine data, saved with joblib.

Writes build/byom/wine_xgb.joblib, build/byom/wine_xgb_test.csv and build/byom/wine_xgb_test_target.csv.
XGBoost classifies integer-encoded classes, so the served labels are "0", "1" and "2".
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

out = Path("build/byom")
out.mkdir(parents=True, exist_ok=True)
wine = load_wine(as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(
    wine.data, wine.target, test_size=0.3, random_state=0, stratify=wine.target
)
model = XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X_train, y_train)
joblib.dump(model, out / "wine_xgb.joblib")
X_test.to_csv(out / "wine_xgb_test.csv", index=False)
y_test.to_csv(out / "wine_xgb_test_target.csv", index=False)
print(
    f"wine_xgb.joblib: {type(model).__name__} with {model.n_estimators} trees on {X_test.shape[1]} features"
)
