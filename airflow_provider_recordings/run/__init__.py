"""The run driver: one way for every operator to validate, work, defer, resume, stop and report.

* :mod:`~airflow_provider_recordings.run.driver`: the loop over an operator's phases,
  deferral and resumption, stopping, the result and what it tells Airflow.
* :mod:`~airflow_provider_recordings.run.state`: the typed, versioned state that crosses
  deferrals (:mod:`~airflow_provider_recordings.run.codec` encodes it).
* :mod:`~airflow_provider_recordings.run.machine`: each operator's phases as a table.
* :mod:`~airflow_provider_recordings.run.walk`: walking a selection page by page.
* :mod:`~airflow_provider_recordings.run.report`: the audit report and receipts.
"""
