"""A small Keras network (Normalization -> Dense -> Dense(softmax)) on the wine data, saved as .keras.

Writes build/byom/wine_net.keras (and reuses build/byom/wine_test.csv as its sample) and the
class names in its output order, build/byom/wine_labels.txt.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

out = Path("build/byom")
out.mkdir(parents=True, exist_ok=True)
wine = load_wine(as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(
    wine.data, wine.target, test_size=0.3, random_state=0, stratify=wine.target
)
keras.utils.set_random_seed(0)
normalise = keras.layers.Normalization()
normalise.adapt(X_train.to_numpy())
net = keras.Sequential(
    [
        keras.Input((X_train.shape[1],)),
        normalise,
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ]
)
net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
net.fit(X_train.to_numpy(), y_train.to_numpy(), epochs=60, verbose=0)
net.save(out / "wine_net.keras")
X_test.to_csv(out / "wine_net_test.csv", index=False)
pd.Series(y_test.to_numpy()).to_csv(out / "wine_net_test_target.csv", index=False)
(out / "wine_labels.txt").write_text("\n".join(wine.target_names) + "\n")
print(f"wine_net.keras: {net.count_params()} parameters, labels {list(wine.target_names)}")
