from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

# Load the script beside this file, so the Space runs the code it ships (and works under any repo name).
module = evaluate.load(str(Path(__file__).resolve().with_name("language_aware_retrieval.py")))
launch_gradio_widget(module)
