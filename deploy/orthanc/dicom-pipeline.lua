-- Notifies dicom-pipeline's webhook when a study becomes stable. Fire-and-forget: the
-- change-feed sensor and reconciliation catch anything this call loses.
function OnStableStudy(studyId, tags, metadata)
  HttpPost(os.getenv('DICOM_PIPELINE_WEBHOOK_URL') .. '/api/v1/ingestion/studies',
           DumpJson({ID = studyId}, true),
           {['Content-Type'] = 'application/json',
            ['Authorization'] = 'Bearer ' .. os.getenv('DICOM_PIPELINE_WEBHOOK_TOKEN')})
end
