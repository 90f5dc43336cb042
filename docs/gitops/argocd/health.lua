-- Argo CD health check for stackscaler.dev/v1alpha1 WebTier, WorkerPool,
-- ReadReplicaPool, CachePool and TableCapacity (the same script for the five kinds).
-- Install: docs/gitops/argocd/argocd-cm.yaml; what each state means: docs/gitops.md.
--
-- Written for Argo CD's Lua sandbox: Lua 5.1 (gopher-lua) with the base,
-- table and os libraries only, so no string or math library and no string
-- methods. Every string in the object is data: it is only compared and
-- concatenated, never interpreted, and a field of an unexpected type is
-- treated as absent.
--
-- It reads only what the operator writes through /status:
-- observedGeneration, conditions, currentCapacity, desiredCapacity,
-- startingCapacity and pendingAction. First match wins:
--   1. no status yet, no Ready condition, or a status about an older
--      generation than metadata.generation                      -> Progressing
--   2. Conflict=True, Ready=False, Fallback=True or
--      MetricsAvailable=False                                   -> Degraded
--   3. Paused=True or DryRun=True                               -> Suspended
--   4. Ready=True, also while a scale action is in flight       -> Healthy
--   5. anything else (Ready=Unknown)                            -> Progressing

local function text(value)
  if type(value) == "string" then
    return value
  end
  return ""
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  return nil
end

local function condition(status, kind)
  local conditions = status.conditions
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function is(c, value)
  return c ~= nil and c.status == value
end

local function explain(c, otherwise)
  local message = text(c.message)
  if message ~= "" then
    return message
  end
  local reason = text(c.reason)
  if reason ~= "" then
    return reason
  end
  return otherwise
end

local function health(state, message)
  return { status = state, message = message }
end

local function assess(resource)
  local status = resource.status
  local ready = nil
  if type(status) == "table" then
    ready = condition(status, "Ready")
  end
  if ready == nil then
    return health("Progressing", "waiting for the stackscaler operator to reconcile this resource")
  end

  local meta = resource.metadata
  local generation = nil
  if type(meta) == "table" then
    generation = number(meta.generation)
  end
  local observed = number(status.observedGeneration)
  if generation ~= nil and (observed == nil or observed < generation) then
    local seen = "no generation"
    if observed ~= nil then
      seen = "generation " .. observed
    end
    return health(
      "Progressing",
      "waiting for the stackscaler operator to reconcile generation " .. generation
        .. " (the status is about " .. seen .. ")"
    )
  end

  local conflict = condition(status, "Conflict")
  if is(conflict, "True") then
    return health("Degraded", explain(conflict, "another resource manages the same target"))
  end
  if is(ready, "False") then
    return health("Degraded", explain(ready, "not ready"))
  end
  local metrics = condition(status, "MetricsAvailable")
  local fallback = condition(status, "Fallback")
  if is(metrics, "False") or is(fallback, "True") then
    local message = "metrics unavailable"
    if is(metrics, "False") then
      message = message .. ": " .. explain(metrics, "unknown")
    end
    if is(fallback, "True") then
      message = message .. "; in fallback: " .. explain(fallback, "fallback capacity")
    end
    return health("Degraded", message)
  end

  local paused = condition(status, "Paused")
  if is(paused, "True") then
    return health("Suspended", explain(paused, "paused"))
  end
  local dry = condition(status, "DryRun")
  if is(dry, "True") then
    return health("Suspended", "DryRun: " .. explain(dry, "decides without acting"))
  end

  if is(ready, "True") then
    -- A scale action in flight is the operator doing its job, not a rollout:
    -- Healthy, so that sync waves and PostSync hooks do not wait for it.
    local message = explain(ready, "reconciled")
    local pending = status.pendingAction
    local current = number(status.currentCapacity)
    local desired = number(status.desiredCapacity)
    if type(pending) == "table" and text(pending.headline) ~= "" then
      message = "scaling: " .. pending.headline
    elseif type(pending) == "table" and number(pending.from) ~= nil and number(pending.to) ~= nil then
      message = "scaling: " .. pending.from .. " -> " .. pending.to
    elseif current ~= nil and desired ~= nil and current ~= desired then
      message = "scaling: " .. message
    end
    local starting = number(status.startingCapacity)
    if starting ~= nil and starting > 0 then
      message = message .. " (" .. starting .. " unit(s) starting)"
    end
    return health("Healthy", message)
  end

  local state = text(ready.status)
  if state == "" then
    state = "without a status"
  end
  return health("Progressing", "Ready is " .. state .. ": " .. explain(ready, "no reason given"))
end

return assess(obj)
