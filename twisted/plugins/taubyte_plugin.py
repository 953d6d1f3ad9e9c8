from twisted.application.service import ServiceMaker

taubyte = ServiceMaker("Taubyte", "tau.tap", "A Taubyte cloud node (tau)", "taubyte")
