"""The declarative-automation policy shared by the retraining chain."""

import dagster as dg

# training_dataset -> base_model -> lora_adapter -> company_benchmark -> eval_scores -> registered_model ->
# deployed_endpoint follow their parents: a new feedback_dataset (itself eager on feedback volume) flows all the
# way to a canary, gated by the blocking eval check. deduped_corpus is NOT eager: a commit to a repo refreshes
# the corpus only when someone (or a schedule) materializes it, not a retrain per push.
RETRAIN_CHAIN = dg.AutomationCondition.eager()
