"""The rollback job (modelwatch_rollback): actions, exactly once, audited."""
