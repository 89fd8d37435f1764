"""Train the example model: a scikit-learn LinearRegression on synthetic data.

Writes generated/model/sklearn_regression_model.pkl and
generated/sample-request.json. Run with the Python that has scikit-learn
(/usr/bin/python3 on Debian with python3-sklearn).
"""
import json
import os
import sys

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "generated")
os.makedirs(os.path.join(out, "model"), exist_ok=True)

rng = np.random.default_rng(42)
X = rng.uniform(0, 10, size=(500, 10))
coef = np.arange(1, 11) * 100.0
y = X @ coef + 250.0 + rng.normal(0, 5, size=500)
model = LinearRegression().fit(X, y)
joblib.dump(model, os.path.join(out, "model", "sklearn_regression_model.pkl"))

with open(os.path.join(out, "sample-request.json"), "w") as f:
    json.dump({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}, f)
print("trained", out, file=sys.stderr)
