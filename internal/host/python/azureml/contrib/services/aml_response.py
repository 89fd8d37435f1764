# moe compatibility shim: the legacy import path of the Azure inference server.
from azureml_inference_server_http.api.aml_response import *  # noqa: F401,F403
from azureml_inference_server_http.api.aml_response import AMLResponse  # noqa: F401
