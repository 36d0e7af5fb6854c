"""The DICOM PS3.15 Basic Application Level Confidentiality Profile, as data.

Table E.1-1 (the "Basic Prof." column) by attribute keyword, in one place.
Action codes, as the standard writes them:

    D  replace with a non-zero-length dummy value consistent with the VR
    Z  replace with a zero-length value, or a dummy value consistent with the VR
    X  remove
    K  keep (the basic profile has none; options such as "retain UIDs" use it)
    U  replace the UID with a non-zero-length UID, consistently within the set
    compound codes (X/Z, Z/D, X/D, X/Z/D, X/Z/U*) pick the first code unless the
    IOD requires the attribute, in which case the next one applies.

Besides this table the profile removes every private attribute and the
repeating groups Curve Data (50xx,xxxx), Overlay Data (60xx,3000) and Overlay
Comments (60xx,4000). Transcribed from the standard's table with each tag
resolved to its pydicom keyword; :mod:`huizhen.mappings.deidentify` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final


def _table(by_action: Mapping[str, str]) -> Mapping[str, str]:
    table = {kw: action for action, keywords in by_action.items() for kw in keywords.split()}
    return MappingProxyType(table)


BASIC_PROFILE: Final[Mapping[str, str]] = _table(
    {
        "D": """
            AcquisitionFieldOfViewLabel ClinicalTrialProtocolEthicsCommitteeName
            ClinicalTrialProtocolID ClinicalTrialSponsorName ClinicalTrialSubjectID
            ClinicalTrialSubjectReadingID ContainerIdentifier ContentSequence
            DeviceLabel EntityLabel EntityLongLabel FlowIdentifier
            FlowIdentifierSequence FrameOriginTimestamp GraphicAnnotationSequence
            ImpedanceMeasurementDateTime InterlockDateTime InterlockDescription
            InterlockOriginDescription OverrideDateTime
            PersonIdentificationCodeSequence PersonName RTPlanLabel
            RTPrescriptionLabel RTToleranceSetLabel RadiationDoseIdentificationLabel
            RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel
            RecordedRTControlPointDateTime SourceEndDateTime SourceIdentifier
            SourceStartDateTime SpecimenIdentifier StructureSetLabel
            TreatmentPositionGroupLabel TreatmentSite
            TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription
            UserContentLabel UserContentLongLabel VerifyingObserverName
            VerifyingObserverSequence VerifyingOrganization XRayDetectorID
            XRaySourceID
        """,
        "Z": """
            AccessionNumber ClinicalTrialCoordinatingCenterName
            ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName
            ClinicalTrialTimePointID ConceptualVolumeCombinationDescription
            ConceptualVolumeDescription ConsultingPhysicianName
            DeviceAlternateIdentifier FillerOrderNumberImagingServiceRequest
            FractionationNotes IssuerOfTheContainerIdentifierSequence
            IssuerOfTheSpecimenIdentifierSequence ManufacturerDeviceIdentifier
            PatientBirthDate PatientID PatientName PatientSex
            PlacerOrderNumberImagingServiceRequest PrescriptionNotes
            PrescriptionNotesSequence ROIInterpreter ROIName RTAccessoryDeviceSlotID
            RTAccessoryHolderSlotID RTPhysicianIntentNarrative
            RadiationGenerationModeDescription ReasonForSuperseding
            ReferringPhysicianName SpecimenPreparationSequence StructureSetDate
            StudyDate StudyID StudyTime TreatmentTechniqueNotes
            VerifyingObserverIdentificationCodeSequence
        """,
        "X": """
            AcquisitionComments AcquisitionProtocolDescription
            ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial
            AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
            AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID
            Allergies Arbitrary AuthorObserverSequence BeamDescription
            BolusDescription BranchOfService CameraOwnerName CassetteID
            ClinicalTrialProtocolEthicsCommitteeApprovalNumber
            ClinicalTrialSeriesDescription ClinicalTrialSeriesID
            ClinicalTrialTimePointDescription CommentsOnRadiationDose
            CommentsOnThePerformedProcedureStep CompensatorDescription
            ConfidentialityConstraintOnPatientDataDescription
            ConsultingPhysicianIdentificationSequence ContainerComponentID
            ContainerDescription ContentCreatorIdentificationCodeSequence
            ContributionDescription CountryOfResidence CurrentObserverTrial
            CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence
            DataSetTrailingPadding DecompositionDescription DerivationDescription
            DeviceDescription DeviceSettingDescription DigitalSignaturesSequence
            DischargeDiagnosisDescription DistributionAddress DistributionName
            DoseReferenceDescription EntityDescription EntityName
            EquipmentFrameOfReferenceDescription EthnicGroup
            ExpectedCompletionDateTime FixationDeviceDescription
            FractionGroupDescription FrameComments GPSAltitude GPSAltitudeRef
            GPSAreaInformation GPSDOP GPSDateStamp GPSDestBearing GPSDestBearingRef
            GPSDestDistance GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef
            GPSDestLongitude GPSDestLongitudeRef GPSDifferential GPSImgDirection
            GPSImgDirectionRef GPSLatitude GPSLatitudeRef GPSLongitude GPSLongitudeRef
            GPSMapDatum GPSMeasureMode GPSProcessingMethod GPSSatellites GPSSpeed
            GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack GPSTrackRef GPSVersionID
            GantryID GeneratorID HumanPerformerName HumanPerformerOrganization
            IconImageSequence IdentifyingComments ImageComments
            ImagePresentationComments ImagingServiceRequestComments Impressions
            InstanceCoercionDateTime InstanceOriginStatus InstitutionAddress
            InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence
            InsurancePlanIdentification
            IntendedRecipientsOfResultsIdentificationSequence
            InterpretationApproverSequence InterpretationAuthor
            InterpretationDiagnosisDescription InterpretationIDIssuer
            InterpretationRecorder InterpretationText InterpretationTranscriber
            IssuerOfAdmissionID IssuerOfAdmissionIDSequence IssuerOfPatientID
            IssuerOfServiceEpisodeID IssuerOfServiceEpisodeIDSequence
            LastMenstrualDate LensMake LensModel LensSerialNumber LensSpecification
            LongDeviceDescription MAC MakerNote MedicalAlerts MedicalRecordLocator
            MilitaryRank ModifiedAttributesSequence ModifiedImageDescription
            ModifyingDeviceID MultienergyAcquisitionDescription
            NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults
            NonconformingDataElementValue NonconformingModifiedAttributesSequence
            ObservationDateTrial ObservationTimeTrial Occupation
            OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy
            OrderEntererLocation OriginalAttributesSequence OtherPatientIDs
            OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime
            ParticipantSequence PatientAddress PatientAge PatientBirthName
            PatientBirthTime PatientComments PatientInstitutionResidence
            PatientInsurancePlanCodeSequence PatientMotherBirthName
            PatientPrimaryLanguageCodeSequence
            PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference
            PatientSize PatientState PatientTelecomInformation PatientTelephoneNumbers
            PatientTransportArrangements PatientWeight PerformedLocation
            PerformedProcedureStepDescription PerformedProcedureStepEndDate
            PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime
            PerformedProcedureStepID PerformedProcedureStepStartDate
            PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime
            PerformedStationAETitle PerformedStationGeographicLocationCodeSequence
            PerformedStationName PerformedStationNameCodeSequence
            PerformingPhysicianIdentificationSequence PerformingPhysicianName
            PersonAddress PersonTelecomInformation PersonTelephoneNumbers
            PhysicianApprovingInterpretation PhysiciansOfRecord
            PhysiciansOfRecordIdentificationSequence
            PhysiciansReadingStudyIdentificationSequence PlateID PreMedication
            PregnancyStatus PrescriptionDescription PriorTreatmentDoseDescription
            ProcedureStepCancellationDateTime ROIDescription ROIGenerationDescription
            ROIObservationDescription ROIObservationLabel RTPlanDescription RTPlanName
            ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence
            ReasonForStudy ReasonForTheImagingServiceRequest
            ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence
            ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
            ReferencedPatientPhotoSequence ReferencedPatientSequence
            ReferencedSOPInstanceMACSequence ReferringPhysicianAddress
            ReferringPhysicianIdentificationSequence
            ReferringPhysicianTelephoneNumbers RegionOfResidence
            RequestAttributesSequence RequestedContrastAgent
            RequestedProcedureComments RequestedProcedureID RequestedProcedureLocation
            RequestedSeriesDescription RequestingPhysician RequestingService
            RespiratoryMotionCompensationTechniqueDescription ResponsibleOrganization
            ResponsiblePerson ResultsComments ResultsDistributionListSequence
            ResultsIDIssuer ScheduledHumanPerformersSequence
            ScheduledPatientInstitutionResidence
            ScheduledPerformingPhysicianIdentificationSequence
            ScheduledPerformingPhysicianName ScheduledProcedureStepDescription
            ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
            ScheduledProcedureStepExpirationDateTime ScheduledProcedureStepID
            ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
            ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime
            ScheduledProcedureStepStartTime ScheduledStationAETitle
            ScheduledStationGeographicLocationCodeSequence ScheduledStationName
            ScheduledStationNameCodeSequence ScheduledStudyLocation
            ScheduledStudyLocationAETitle SeriesDescription ServiceEpisodeDescription
            ServiceEpisodeID SetupTechniqueDescription ShieldingDeviceDescription
            SlideIdentifier SmokingStatus SourceManufacturer SpecialNeeds
            SpecimenAccessionNumber SpecimenDetailedDescription
            SpecimenShortDescription StructureSetDescription StructureSetName
            StudyComments StudyDescription StudyIDIssuer TelephoneNumberTrial
            TextComments TextString TimezoneOffsetFromUTC TopicAuthor TopicKeywords
            TopicSubject TopicTitle TransducerIdentificationSequence
            TreatmentMachineName UDISequence UniqueDeviceIdentifier
            VerbalSourceIdentifierCodeSequenceTrial VerbalSourceTrial VisitComments
            XRayDetectorLabel
        """,
        "U": """
            ConcatenationUID ConceptualVolumeUID ConstituentConceptualVolumeUID
            DeviceUID DigitalSignatureUID DimensionOrganizationUID DoseReferenceUID
            DosimetricObjectiveUID FailedSOPInstanceUIDList FiducialUID
            FrameOfReferenceUID InstanceCreatorUID IrradiationEventUID
            LargePaletteColorLookupTableUID ManufacturerDeviceClassUID
            MediaStorageSOPInstanceUID MultiplexGroupUID ObservationSubjectUIDTrial
            ObservationUID PaletteColorLookupTableUID PatientSetupUID
            PresentationDisplayCollectionUID PresentationSequenceCollectionUID
            RTTreatmentPhaseUID ReferencedConceptualVolumeUID
            ReferencedDoseReferenceUID ReferencedDosimetricObjectiveUID
            ReferencedFiducialsUID ReferencedFrameOfReferenceUID
            ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
            ReferencedObservationUIDTrial ReferencedSOPInstanceUID
            ReferencedSOPInstanceUIDInFile RelatedFrameOfReferenceUID
            RequestedSOPInstanceUID SOPInstanceUID SeriesInstanceUID
            SourceConceptualVolumeUID SpecimenUID StorageMediaFileSetUID
            StudyInstanceUID SynchronizationFrameOfReferenceUID TargetUID
            TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TrackingUID
            TransactionUID TreatmentPositionGroupUID TreatmentSessionUID UID
        """,
        "Z/D": """
            ContentCreatorName ContentDate ContentTime ContrastBolusAgent
        """,
        "X/Z": """
            AcquisitionContextSequence AcquisitionDate AcquisitionTime BarcodeValue
            LabelText PatientSexNeutered ReferencedStudySequence
            RequestedProcedureDescription ReviewerName SourceSerialNumber
        """,
        "X/D": """
            AcquisitionDeviceProcessingDescription DetectorID EndAcquisitionDateTime
            FirstTreatmentDate IntendedPhaseEndDate IntendedPhaseStartDate
            MostRecentTreatmentDate OperatorIdentificationSequence ProtocolName
            RTPlanDate RTPlanTime RTTreatmentApproachLabel SeriesDate SeriesTime
            StartAcquisitionDateTime StructureSetTime TreatmentDate TreatmentTime
        """,
        "X/Z/D": """
            AcquisitionDateTime DeviceSerialNumber InstitutionCodeSequence
            InstitutionName OperatorsName ReferencedPerformedProcedureStepSequence
            StationName
        """,
        "X/Z/U*": """
            ReferencedImageSequence SourceImageSequence
        """,
    }
)
