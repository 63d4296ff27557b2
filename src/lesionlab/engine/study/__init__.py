"""``lesionlab study``: a literature study's arms over seeds (:mod:`.run`) and the studies table (:mod:`.summary`)."""
