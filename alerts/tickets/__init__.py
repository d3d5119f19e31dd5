"""Early-warning tickets (预警工单): the state machine, services, responses, effect evaluation, accountability.

- ``workflow``: the one table-driven state machine (预警→签收→研判→处置→回应→办结→评估, 退回/改派, 延期, 合并, 重开);
- ``service``: keyword-only functions over the caller's session (``open_or_update`` and the actions),
  each writing an audit row and enqueuing outbox notifications in the same transaction;
- ``permissions``: which role and unit may do what (other units' tickets read as not found);
- ``responses``: 回应/口径 with 先审后发 (distinct approvers) and immutable published text;
- ``evaluation``: 效果评估 before/after the response (平息/持续/升级);
- ``accountability``: per-unit figures and the three 问责 counts, CSV/XLSX export.
"""
