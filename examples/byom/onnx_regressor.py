"""An ONNX file exported by hand (skl2onnx), as a team that already has ONNX models would bring it.

A gradient boosting regressor of the diabetes progression, trained on a NumPy array (so the graph
knows no feature names: the sample's CSV header names them). Writes build/byom/progression.onnx,
build/byom/progression_test.csv and build/byom/progression_test_target.csv.
"""

from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import train_test_split

out = Path("build/byom")
out.mkdir(parents=True, exist_ok=True)
X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1)
model = GradientBoostingRegressor(n_estimators=200, max_depth=2, random_state=1)
model.fit(X_train.to_numpy(), y_train)
(out / "progression.onnx").write_bytes(
    to_onnx(model, X_train.to_numpy().astype(np.float32)).SerializeToString()
)
X_test.to_csv(out / "progression_test.csv", index=False)
y_test.to_csv(out / "progression_test_target.csv", index=False)
print(f"progression.onnx: {model.n_estimators} trees, input {X.shape[1]} float features")
