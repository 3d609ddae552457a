-- dicom-pipeline's Orthanc callbacks: they tell the webhook what changed. Orthanc runs them
-- in its Lua thread, after the change; HttpPost is fire-and-forget, so the change-feed
-- sensor and reconciliation catch whatever a lost call misses.
-- Environment: DICOM_PIPELINE_WEBHOOK_URL, DICOM_PIPELINE_WEBHOOK_TOKEN.

local function notify(path, body)
  HttpPost(os.getenv('DICOM_PIPELINE_WEBHOOK_URL') .. path,
           DumpJson(body, true),
           {['Content-Type'] = 'application/json',
            ['Authorization'] = 'Bearer ' .. os.getenv('DICOM_PIPELINE_WEBHOOK_TOKEN')})
end

-- No new instance for StableAge seconds: ingest the study.
function OnStableStudy(studyId, tags, metadata)
  notify('/api/v1/ingestion/studies', {ID = studyId})
end

-- Deletions. Orthanc calls OnDeletedInstance for every instance of a deleted series or
-- study too, so series need no callback of their own; the webhook gathers one study's
-- notices into one run.
function OnDeletedStudy(studyId)
  notify('/api/v1/ingestion/deletions', {ID = studyId, Level = 'Study'})
end

function OnDeletedInstance(instanceId)
  notify('/api/v1/ingestion/deletions', {ID = instanceId, Level = 'Instance'})
end
