import json
import logging
import os

import joblib
import numpy


def init():
    """Load the model once per worker."""
    global model
    # AZUREML_MODEL_DIR is the folder that contains the model folder.
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    logging.info("Init complete")


def run(raw_data):
    """Score one request: {"data": [[10 features], ...]} -> list of predictions."""
    data = json.loads(raw_data)["data"]
    data = numpy.array(data)
    result = model.predict(data)
    return result.tolist()
