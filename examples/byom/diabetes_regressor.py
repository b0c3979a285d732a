"""A scikit-learn regressor (gradient boosting on the bundled diabetes data), saved with joblib.

Writes build/byom/diabetes.joblib, build/byom/diabetes_test.csv and build/byom/diabetes_test_target.csv.
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import train_test_split

out = Path("build/byom")
out.mkdir(parents=True, exist_ok=True)
X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
model = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0).fit(X_train, y_train)
joblib.dump(model, out / "diabetes.joblib")
X_test.to_csv(out / "diabetes_test.csv", index=False)
y_test.to_csv(out / "diabetes_test_target.csv", index=False)
print(f"diabetes.joblib: {type(model).__name__} on {X.shape[1]} features")
